"""benchmarks/device.sh's CPU fallback: no installs, tiny shapes, every JSON line present.

The reference side is a stub (the torch venv is not installed at test time); our side runs.
"""
import json
import os
import stat
import subprocess
import sys

import pytest

from benchmarks import pgd_at

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(not os.path.isfile(pgd_at.TORCH_SCRIPT),
                    reason="needs ../shared/bench/torch_pgd_at.py next to the checkout (CI has it; "
                    "a clone elsewhere does not)")
def test_cpu_fallback_prints_every_line(tmp_path):
    stub = tmp_path / "torch_python"
    stub.write_text("#!/bin/sh\necho '{\"framework\": \"torch\", \"images_per_s\": 2.0}'\n")
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PYTHON=sys.executable, TORCH_PYTHON=str(stub), PYTHONPATH=ROOT)
    proc = subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "device.sh"), "--cpu-tiny"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    names = [line["name"] for line in lines]
    assert names[0] == "device" and lines[0]["ours"] == "cpu"
    shape = "preact_resnet18_w4_b8"
    for name in (f"device_step_float32/{shape}", f"device_step_float32_xla/{shape}",
                 f"device_fb_plus_mask_update_vs_step/{shape}", "device_bench_done"):
        assert name in names, (name, names)
    step = lines[names.index(f"device_step_float32/{shape}")]
    assert step["ours"] > 0 and step["reference"] == 2.0
    assert step["ratio"] == pytest.approx(step["ours"] / 2.0, rel=1e-2)
    assert step["achieved_tflops"] > 0 and step["mfu"] is None  # no peak known for a CPU
