"""benchmarks/conv_ops.py: our side (conv_sides.py, as conv_ops runs it) times every shape and
op; the weighted totals are hand math."""
import json
import os
import subprocess
import sys

from benchmarks import conv_ops

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_tf_side_times_every_shape_and_op():
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "conv_sides.py"), "tf",
         "--batch", "1", "--width", "1", "--repeats", "1"],
        capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    times = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(times) == len(conv_ops.SHAPES)
    for ops in times.values():
        assert set(ops) == set(conv_ops.OPS) and all(t > 0 for t in ops.values())


def test_weighted_sum_counts_each_convolution_of_the_model():
    # Every op of every shape takes 1 ms: the total is the model's 3x3 convolutions after the
    # stem (16 in PreActResNet-18) times the ops summed.
    times = {conv_ops._key(s, ci * 2, co * 2, st): {op: 1.0 for op in conv_ops.OPS}
             for s, ci, co, st, _ in conv_ops.SHAPES}
    assert sum(c for *_, c in conv_ops.SHAPES) == 16
    assert conv_ops.weighted(times, 2, ("forward", "input_grad")) == 32.0
    assert conv_ops.weighted(times, 2, conv_ops.OPS) == 48.0
