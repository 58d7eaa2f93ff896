"""The accelerator benchmark ``benchmarks/device.sh`` runs: JSON lines for our PGD-10 AT step
against the reference in fp32, mixed precision and XLA, achieved FLOP/s and MFU, and the FB+
mask update cost. ``--device=cpu --tiny`` is its fallback path (tiny widths, one step), tested
on machines without a GPU.

Usage: python -m benchmarks.device_bench [--device auto|gpu|cpu] [--tiny]
       [--torch-python PATH]
"""
import argparse
import json
import os
import subprocess

from benchmarks import pgd_at

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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", choices=["auto", "gpu", "cpu"], default="auto")
    p.add_argument("--tiny", action="store_true", help="width 4, batch 8, one timed step")
    p.add_argument("--torch-python", default="", help="python of a venv with the reference torch")
    a = p.parse_args(argv)
    name = gpu_name() if a.device != "cpu" else None
    if a.device == "gpu" and not name:
        raise SystemExit("--device=gpu but nvidia-smi finds no GPU; use --device=auto or cpu.")
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


if __name__ == "__main__":
    main()
