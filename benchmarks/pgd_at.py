"""``make bench``: our PGD-10 AT step against the PyTorch reference, side by side, one process
tree, same shapes; plus the masks' overhead, one FB+ mask update against one training step,
evaluation throughput and peak memory. Each comparison prints one JSON line
``{"name", "ours", "reference", "unit", "ratio"}`` (ratio = ours / reference; for overheads,
masked / unmasked time).

The reference runs in its own venv (``.venv-torch``, torch==2.13.0 CPU), created on first use.
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH_VENV = os.path.join(ROOT, ".venv-torch")
TORCH_SCRIPT = os.path.join(ROOT, "..", "shared", "bench", "torch_pgd_at.py")
SHAPES = ((64, 32), (16, 64))


def torch_python():
    python = os.path.join(TORCH_VENV, "bin", "python")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", TORCH_VENV], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", "torch==2.13.0", "numpy"],
                       check=True)
    return python


def _json_line(cmd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ours(**kwargs):
    cmd = [sys.executable, "-m", "benchmarks.ours_step"]
    for key, value in kwargs.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            cmd.append(flag)
        elif value not in (False, None):
            cmd += [flag, str(value)]
    return _json_line(cmd)


# Runs the reference script unchanged, then adds its peak resident memory to its JSON line.
_WRAPPER = (
    "import json, resource, runpy, sys, io, contextlib\n"
    "buf = io.StringIO()\n"
    "sys.argv = sys.argv[1:]\n"
    "with contextlib.redirect_stdout(buf):\n"
    "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
    "line = json.loads(buf.getvalue().strip().splitlines()[-1])\n"
    "line['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
    "print(json.dumps(line))\n")


def reference(width, batch, steps):
    return _json_line([torch_python(), "-c", _WRAPPER, TORCH_SCRIPT, "--width", str(width),
                       "--batch", str(batch), "--steps", str(steps)])


def emit(name, ours_value, reference_value, unit, ratio=None, **extra):
    if ratio is None and ours_value and reference_value:
        ratio = ours_value / reference_value
    line = {"name": name, "ours": ours_value, "reference": reference_value, "unit": unit,
            "ratio": None if ratio is None else round(ratio, 3)}
    line.update(extra)
    print(json.dumps(line), flush=True)
    return line


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer timed steps (a few minutes)")
    p.add_argument("--jit", action="store_true", help="also measure our step with XLA")
    a = p.parse_args(argv)
    lines = []
    for width, batch in SHAPES:
        # About the same wall time per shape; the small model needs more steps to beat noise.
        steps = (2 if a.quick else 5) * (2 if width < 64 else 1)
        shape = f"preact_resnet18_w{width}_b{batch}"
        torch_run = reference(width, batch, steps)
        our_run = ours(width=width, batch=batch, steps=steps)
        lines.append(emit(f"pgd10_at_step/{shape}", our_run["images_per_s"],
                          torch_run["images_per_s"], "images/s"))
        if a.jit:
            jit_run = ours(width=width, batch=batch, steps=steps, jit=True)
            lines.append(emit(f"pgd10_at_step_xla/{shape}", jit_run["images_per_s"],
                              torch_run["images_per_s"], "images/s"))
        masked = ours(width=width, batch=batch, steps=steps, sparsity=0.8)
        plain = ours(width=width, batch=batch, steps=steps, plain=True)
        lines.append(emit(f"mask_overhead/{shape}", masked["step_s"], plain["step_s"],
                          "s/step", ratio=masked["step_s"] / plain["step_s"]))
        # FB+ run: the step also records dense gradients for growth; one update against it.
        fb = ours(width=width, batch=batch, steps=steps, sparsity=0.8, mask_update=True)
        lines.append(emit(f"fb_plus_mask_update_vs_step/{shape}", fb["mask_update_s"],
                          fb["step_s"], "s", ratio=fb["mask_update_s"] / fb["step_s"]))
        lines.append(emit(f"peak_rss/{shape}", our_run["peak_rss_mb"],
                          torch_run["peak_rss_mb"], "MiB"))
    for attack in ("pgd20", "autoattack"):
        run = ours(width=16, batch=64 if attack == "pgd20" else 16, eval=attack)
        lines.append(emit(f"eval_{attack}/preact_resnet18_w16", run["images_per_s"], None,
                          "images/s"))
    return lines


if __name__ == "__main__":
    main()
