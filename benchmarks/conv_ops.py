"""The 3x3 convolutions of PreActResNet-18, one op at a time: TensorFlow against PyTorch.

Why: at width 64 the convolutions are about 90% of our PGD-10 step's op time (TensorFlow
profiler, BENCHMARKS.md), and both frameworks call oneDNN for them. The weighted sum of these
ops, forward + input gradient (one PGD iteration) and forward + both gradients (the update),
bounds the step ratio that anything outside the convolutions can reach.

    python -m benchmarks.conv_ops [--batch 32] [--width 64] [--repeats 20] [--side both|tf|torch]

Prints one JSON line per shape and op (``{"name", "ours", "reference", "unit": "ms", "ratio"}``,
ratio = reference / ours time: above 1 means ours is faster) and the weighted totals. Each side
runs in its own process (``benchmarks/conv_sides.py``; the reference in ``.venv-torch``), with
the default threads. ``--side=tf`` (or ``torch``) prints that side's times alone, as one JSON
object. A bad value is refused on one line before anything runs.
"""
import json
import os
import subprocess
import sys

from absl import flags

from benchmarks import flag_args
from benchmarks.conv_sides import OPS, SHAPES, key as _key
from launch import cli

PROG = "benchmarks.conv_ops"
SIDES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conv_sides.py")
FLAGS = cli.new_flags()
flags.DEFINE_integer("batch", 32, "Images per convolution.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("width", 64, "PreActResNet-18 width (channels of the first stage).",
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("repeats", 20, "Timed calls of each op (after one warm-up call).",
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_enum("side", "both", ("both", "tf", "torch"), "both: ours against the reference "
                  "(JSON lines); tf or torch: that side's times alone.", flag_values=FLAGS)


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
    ours = pgd_at._json_line([sys.executable, SIDES, "tf"] + args)
    ref = pgd_at._json_line([pgd_at.torch_python(), SIDES, "torch"] + args)
    return ours, ref


def main(argv=None):
    """The JSON lines of ``--side=both`` (printed and returned); one side's times otherwise.

    Args:
      argv: the flags, without the program name (default ``sys.argv[1:]``).
    """
    cli.parse(FLAGS, argv, PROG, __doc__)
    a = flag_args.args(FLAGS)
    if a.side != "both":
        from benchmarks import conv_sides, pgd_at
        if a.side == "tf":
            from launch import quiet
            quiet.start_tensorflow(a.verbosity)  # no C++ start-up lines before the JSON
            print(json.dumps(conv_sides.tf_side(a.batch, a.width, a.repeats)))
        else:  # in the reference's venv, as measure() runs it
            subprocess.run([pgd_at.torch_python(), SIDES, "torch", "--batch", str(a.batch),
                            "--width", str(a.width), "--repeats", str(a.repeats)], check=True)
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


def entry(argv=None):
    """``python -m benchmarks.conv_ops``: ``main`` with a bad input as one line; exit status."""
    return flag_args.entry(main, FLAGS, PROG, argv)


if __name__ == "__main__":
    sys.exit(entry())
