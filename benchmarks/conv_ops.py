"""The 3x3 convolutions of PreActResNet-18, one op at a time: TensorFlow against PyTorch.

Why: at width 64 the convolutions are about 90% of our PGD-10 step's op time (TensorFlow
profiler, BENCHMARKS.md), and both frameworks call oneDNN for them. The weighted sum of these
ops, forward + input gradient (one PGD iteration) and forward + both gradients (the update),
bounds the step ratio that anything outside the convolutions can reach.

    python -m benchmarks.conv_ops [--batch 32] [--width 64] [--repeats 20]

Prints one JSON line per shape and op (``{"name", "ours", "reference", "unit": "ms", "ratio"}``,
ratio = reference / ours time: above 1 means ours is faster) and the weighted totals. Each side
runs in its own process (the reference in ``.venv-torch``), with the default threads.
"""
import argparse
import json
import os
import sys
import time

# (input size, in channels / width, out channels / width, stride, how many in the model)
SHAPES = ((32, 1, 1, 1, 4), (32, 1, 2, 2, 1), (16, 2, 2, 1, 3), (16, 2, 4, 2, 1),
          (8, 4, 4, 1, 3), (8, 4, 8, 2, 1), (4, 8, 8, 1, 3))
OPS = ("forward", "input_grad", "filter_grad")


def _time(fn, repeats):
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    if hasattr(out, "numpy"):
        out.numpy()
    return (time.perf_counter() - t0) / repeats * 1e3


def _tf_side(batch, width, repeats):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    if os.environ.get("TF_NUM_INTRAOP_THREADS"):  # pgd_at --threads (ours_step does the same)
        tf.config.threading.set_intra_op_parallelism_threads(
            int(os.environ["TF_NUM_INTRAOP_THREADS"]))
    out = {}
    for size, cin, cout, stride, _ in SHAPES:
        cin, cout = cin * width, cout * width
        x = tf.random.normal((batch, size, size, cin))
        w = tf.random.normal((3, 3, cin, cout))
        # As the model runs them: 'same' at stride 1; at stride 2 an explicit symmetric pad of 1
        # (PyTorch's padding=1; TensorFlow's 'same' would pad only after) and 'valid'.
        padding = "SAME" if stride == 1 else "VALID"
        if stride != 1:
            x = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
        dy = tf.random.normal(tf.nn.conv2d(x, w, stride, padding).shape)
        strides = [1, stride, stride, 1]
        fns = {
            "forward": tf.function(lambda: tf.nn.conv2d(x, w, stride, padding)),
            "input_grad": tf.function(lambda: tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(x), filter=w, out_backprop=dy, strides=strides,
                padding=padding)),
            "filter_grad": tf.function(lambda: tf.raw_ops.Conv2DBackpropFilter(
                input=x, filter_sizes=tf.shape(w), out_backprop=dy, strides=strides,
                padding=padding)),
        }
        out[_key(size, cin, cout, stride)] = {op: _time(fns[op], repeats) for op in OPS}
    return out


def _torch_side(batch, width, repeats):
    import torch
    import torch.nn.functional as F
    out = {}
    with torch.no_grad():
        for size, cin, cout, stride, _ in SHAPES:
            cin, cout = cin * width, cout * width
            x = torch.randn(batch, cin, size, size)
            w = torch.randn(cout, cin, 3, 3)
            dy = torch.randn_like(F.conv2d(x, w, stride=stride, padding=1))
            fns = {
                "forward": lambda: F.conv2d(x, w, stride=stride, padding=1),
                "input_grad": lambda: torch.nn.grad.conv2d_input(
                    x.shape, w, dy, stride=stride, padding=1),
                "filter_grad": lambda: torch.nn.grad.conv2d_weight(
                    x, w.shape, dy, stride=stride, padding=1),
            }
            out[_key(size, cin, cout, stride)] = {op: _time(fns[op], repeats) for op in OPS}
    return out


def _key(size, cin, cout, stride):
    return f"{size}x{size}x{cin}->{cout}/s{stride}"


def weighted(times, width, ops):
    """Sum over the model's convolutions (each shape times its count) of the given ops, ms."""
    return sum(count * sum(times[_key(size, cin * width, cout * width, stride)][op]
                           for op in ops)
               for size, cin, cout, stride, count in SHAPES)


def step_ceiling_ms(times, width, pgd_steps=10):
    """The convolution time of one PGD-AT step, ms: each PGD iteration a forward and an input
    gradient, the update a forward and both gradients (the 16 3x3 convolutions after the stem;
    the stem and the three 1x1 shortcuts are left out)."""
    return (pgd_steps * weighted(times, width, ("forward", "input_grad"))
            + weighted(times, width, OPS))


def ceiling_fraction(step_s, times, width, pgd_steps=10):
    """The step's speed as a fraction of the convolutions-only ceiling: their time over the
    step's (1.0 = the step is nothing but these convolutions; a fall means the rest grew)."""
    return step_ceiling_ms(times, width, pgd_steps) / (1e3 * step_s)


def measure(batch, width, repeats):
    """(TensorFlow's times, PyTorch's times), each side in its own fresh process."""
    from benchmarks import pgd_at
    args = ["--batch", str(batch), "--width", str(width), "--repeats", str(repeats)]
    this = os.path.abspath(__file__)
    ours = pgd_at._json_line([sys.executable, this, "--side", "tf"] + args)
    ref = pgd_at._json_line([pgd_at.torch_python(), this, "--side", "torch"] + args)
    return ours, ref


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--side", choices=["both", "tf", "torch"], default="both")
    a = p.parse_args(argv)
    if a.side != "both":
        side = _tf_side if a.side == "tf" else _torch_side
        print(json.dumps(side(a.batch, a.width, a.repeats)))
        return None
    from benchmarks import pgd_at
    pgd_at.header()
    ours, ref = measure(a.batch, a.width, a.repeats)
    lines = []
    for key in ours:
        for op in OPS:
            lines.append(pgd_at.emit(f"conv/{key}/{op}", round(ours[key][op], 3),
                                     round(ref[key][op], 3), "ms",
                                     ratio=ref[key][op] / ours[key][op]))
    for name, ops in (("pgd_iteration", ("forward", "input_grad")), ("update", OPS)):
        o, r = weighted(ours, a.width, ops), weighted(ref, a.width, ops)
        lines.append(pgd_at.emit(f"conv_total/{name}/w{a.width}_b{a.batch}", round(o, 1),
                                 round(r, 1), "ms", ratio=r / o))
    return lines


if __name__ == "__main__":
    main()
