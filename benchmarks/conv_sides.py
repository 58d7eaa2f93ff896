"""One side of ``conv_ops``: the 3x3 convolutions of PreActResNet-18 timed in TensorFlow or in
PyTorch, in a process of its own; prints one JSON object ``{shape key: {op: ms}}``.

An internal subprocess of ``benchmarks.conv_ops`` (not a user entry point): the PyTorch side runs
in ``.venv-torch``, which has no absl, so it keeps argparse and imports nothing of this
repository; run the user command ``python -m benchmarks.conv_ops --side=tf|torch`` instead.

    python benchmarks/conv_sides.py tf|torch --batch B --width W --repeats N
"""
import argparse
import json
import os
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


def tf_side(batch, width, repeats):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # what birds_tf's own step runs with
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
        out[key(size, cin, cout, stride)] = {op: _time(fns[op], repeats) for op in OPS}
    return out


def torch_side(batch, width, repeats):
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
            out[key(size, cin, cout, stride)] = {op: _time(fns[op], repeats) for op in OPS}
    return out


def key(size, cin, cout, stride):
    return f"{size}x{size}x{cin}->{cout}/s{stride}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("side", choices=["tf", "torch"])
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--width", type=int, required=True)
    p.add_argument("--repeats", type=int, required=True)
    a = p.parse_args(argv)
    side = tf_side if a.side == "tf" else torch_side
    print(json.dumps(side(a.batch, a.width, a.repeats)))


if __name__ == "__main__":
    main()
