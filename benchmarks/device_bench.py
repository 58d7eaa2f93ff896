"""The accelerator benchmark ``benchmarks/device.sh`` runs: JSON lines for our PGD-10 AT step
against the reference in fp32, mixed precision and XLA, achieved FLOP/s and MFU, and the FB+
mask update cost. ``--device=cpu --tiny`` is its fallback path (tiny widths, one step), tested
on machines without a GPU.

Usage: python -m benchmarks.device_bench [--device auto|gpu|cpu] [--tiny]
       [--torch-python PATH] [--verbosity -1|0|1]

A bad input (``--device=gpu`` without a GPU, a ``--torch-python`` that is not there, a missing
reference script) is refused on one line before anything runs (``--verbosity=0``: the traceback).
"""
import json
import os
import subprocess
import sys

from absl import flags

from benchmarks import flag_args, pgd_at
from launch import cli

PROG = "benchmarks.device_bench"
FLAGS = cli.new_flags()
flags.DEFINE_enum("device", "auto", ("auto", "gpu", "cpu"), "auto: the GPU when nvidia-smi "
                  "finds one, else the CPU.", flag_values=FLAGS)
flags.DEFINE_bool("tiny", False, "Width 4, batch 8, one timed step.", flag_values=FLAGS)
flags.DEFINE_string("torch-python", "", "Python of a venv with the reference torch (default: "
                    ".venv-torch, created on first use).", flag_values=FLAGS)

# Dense peak FLOP/s per precision (NVIDIA data sheets; tensor-core figures without sparsity).
# fp32 runs are compared with the TF32 peak: TensorFlow and cuDNN convolutions use TF32 by default.
PEAKS = {
    "H100 PCIe": {"float32": 378e12, "mixed_float16": 756e12, "mixed_bfloat16": 756e12},
    "H100": {"float32": 494.7e12, "mixed_float16": 989.4e12, "mixed_bfloat16": 989.4e12},
    "H200": {"float32": 494.7e12, "mixed_float16": 989.4e12, "mixed_bfloat16": 989.4e12},
}


def gpu_name():
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = out.stdout.strip().splitlines()
    return names[0].strip() if out.returncode == 0 and names else None


def peak_flops(name, precision):
    if not name:
        return None
    for key in ("H100 PCIe", "H100", "H200"):  # most specific first
        if key in name:
            return PEAKS[key][precision]
    return None


def check(a):
    """Refuse a missing ``--torch-python`` or reference script before anything runs."""
    if a.torch_python and not (os.path.isfile(a.torch_python)
                               and os.access(a.torch_python, os.X_OK)):
        raise FileNotFoundError(f"--torch-python={a.torch_python} is not an executable file; "
                                "pass a venv's bin/python with torch, or leave it out.")
    if not os.path.isfile(pgd_at.TORCH_SCRIPT):
        raise FileNotFoundError(f"the reference script {os.path.normpath(pgd_at.TORCH_SCRIPT)} "
                                "is missing; the shared folder must sit next to the repository "
                                "(../shared).")


def main(argv=None):
    """The bench's JSON lines (printed as they come, and returned).

    Args:
      argv: the flags, without the program name (default ``sys.argv[1:]``).
    """
    cli.parse(FLAGS, argv, PROG, __doc__)
    a = flag_args.args(FLAGS)
    check(a)
    name = gpu_name() if a.device != "cpu" else None
    if a.device == "gpu" and not name:
        raise ValueError("--device=gpu but nvidia-smi finds no GPU; use --device=auto or cpu.")
    on_gpu = bool(name)
    if not on_gpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # our subprocesses inherit it
    torch_py = a.torch_python or pgd_at.torch_python()
    shapes = ((4, 8),) if a.tiny else ((64, 128), (16, 256))
    steps = 1 if a.tiny else 10
    lines = [pgd_at.emit("device", name or "cpu", None, "name", ratio=None)]
    for width, batch in shapes:
        shape = f"preact_resnet18_w{width}_b{batch}"
        refs = {}

        def ref(autocast):
            if autocast not in refs:
                refs[autocast] = pgd_at._json_line([
                    torch_py, pgd_at.REF_DRIVER, "step", "--script", pgd_at.TORCH_SCRIPT,
                    "--autocast", autocast, "--", "--width", str(width), "--batch", str(batch),
                    "--steps", str(steps), "--device", "cuda" if on_gpu else "cpu"])
            return refs[autocast]
        variants = [("float32", False), ("mixed_float16", False), ("mixed_bfloat16", False),
                    ("float32", True)]
        if not on_gpu and not pgd_at.cpu_bf16():
            variants = [v for v in variants if v[0] != "mixed_bfloat16"]
        for precision, jit in variants:
            if not on_gpu and precision == "mixed_float16":
                continue  # no fp16 math on these CPUs
            run = pgd_at.ours(width=width, batch=batch, steps=steps, precision=precision,
                              jit=jit)
            achieved = run["images_per_s"] * run["step_flops_per_image"]
            peak = peak_flops(name, precision)
            tag = precision + ("_xla" if jit else "")
            autocast = {"mixed_float16": "fp16", "mixed_bfloat16": "bf16"}.get(precision, "none")
            lines.append(pgd_at.emit(
                f"device_step_{tag}/{shape}", run["images_per_s"],
                ref(autocast)["images_per_s"], "images/s",
                achieved_tflops=round(achieved / 1e12, 3),
                mfu=round(achieved / peak, 4) if peak else None, reference_autocast=autocast))
        fb = pgd_at.ours(width=width, batch=batch, steps=steps, sparsity=0.8, mask_update=True)
        lines.append(pgd_at.emit(f"device_fb_plus_mask_update_vs_step/{shape}",
                                 fb["mask_update_s"], fb["step_s"], "s",
                                 ratio=fb["mask_update_s"] / fb["step_s"]))
    print(json.dumps({"name": "device_bench_done", "device": name or "cpu"}), flush=True)
    return lines


def entry(argv=None):
    """``python -m benchmarks.device_bench``: ``main`` with a bad input as one line."""
    return flag_args.entry(main, FLAGS, PROG, argv)


if __name__ == "__main__":
    sys.exit(entry())
