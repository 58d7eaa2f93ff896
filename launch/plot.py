r"""The paper's figures from workdirs, as PNG files (also logged to each workdir's TensorBoard).

  python -m launch.plot --kind=accuracy --workdir=runs/dense --workdir=runs/fb_plus
  python -m launch.plot --kind=all --workdir=runs/fb_plus --out=figures

Kinds: accuracy (Figure 1), density (A11), layer_density (A10), mask_similarity (A8),
landscape (3/5), gradcam and saliency (6), or all. Figures of several runs (accuracy,
layer_density, gradcam, saliency) go to --out, else to the first workdir's figures/ folder;
per-run figures go to --out, else to each workdir's figures/ folder.
"""
import os
import sys

from absl import flags

from . import cli

KINDS = ("accuracy", "density", "layer_density", "mask_similarity", "landscape", "gradcam",
         "saliency")
PER_RUN = ("density", "mask_similarity", "landscape")

FLAGS = cli.new_flags()
flags.DEFINE_enum("kind", "all", KINDS + ("all",), "Which figure, or all.", flag_values=FLAGS)
flags.DEFINE_multi_string("workdir", [], "A finished launch.train workdir (repeat for several "
                          "runs; at least one).", flag_values=FLAGS)
flags.DEFINE_string("out", None, "Folder for the PNGs (default: <workdir>/figures).",
                    flag_values=FLAGS)
flags.DEFINE_enum("which", "final", ("best", "final"),
                  "Checkpoint for landscape / gradcam / saliency.", flag_values=FLAGS)
flags.DEFINE_integer("grid", 11, "Landscape grid points per axis.", flag_values=FLAGS)
flags.DEFINE_float("span", 1.0, "Landscape half-width.", flag_values=FLAGS)
flags.DEFINE_integer("batches", 2, "Landscape batches.", flag_values=FLAGS)
flags.DEFINE_enum("loss", "robust", ("robust", "clean"),
                  "Landscape loss: PGD (eval settings) or clean.", flag_values=FLAGS)
flags.DEFINE_enum("split", "train", ("train", "val", "test"), "Landscape data split.",
                  flag_values=FLAGS)
flags.DEFINE_integer("images", 6, "Gradcam / saliency images (>= 2).", flag_values=FLAGS)
flags.DEFINE_integer("smooth_samples", 0, "SmoothGrad samples for saliency (0 = vanilla "
                     "gradient).", flag_values=FLAGS)


def run(kind, workdirs, out=None, which="final", grid=11, span=1.0, batches=2, loss="robust",
        split="train", images=6, smooth_samples=0):
    """Make the figures; returns the PNG paths. With ``kind='all'`` a figure a run cannot have
    (mask similarity of a dense run) is skipped with a note instead of stopping the rest."""
    from birds_tf import plots
    from birds_tf.utils import workdir as wd
    workdirs = [wd.check(path) for path in workdirs]
    makers = {
        "accuracy": lambda ws: plots.accuracy_figure(ws, out),
        "layer_density": lambda ws: plots.layer_density_figure(ws, out),
        "gradcam": lambda ws: plots.gradcam_figure(ws, out, which, images),
        "saliency": lambda ws: plots.saliency_figure(ws, out, which, images,
                                                     smooth_samples=smooth_samples),
        "density": lambda w: plots.density_figure(w, _per_run(out, w, workdirs)),
        "mask_similarity": lambda w: plots.mask_similarity_figure(w, _per_run(out, w, workdirs)),
        "landscape": lambda w: plots.landscape_figure(w, _per_run(out, w, workdirs), which, grid,
                                                      span, batches, loss == "robust", split),
    }
    paths = []
    for name in (KINDS if kind == "all" else (kind,)):
        targets = [[w] for w in workdirs] if name in PER_RUN else [workdirs]
        for target in targets:
            arg = target[0] if name in PER_RUN else target
            try:
                paths += makers[name](arg)
            except ValueError as e:
                if kind != "all":
                    raise
                print(f"skipped {name} for {target}: {e}")
    return paths


def _per_run(out, workdir, workdirs):
    """With --out and several runs, per-run figures go to out/<run folder name>."""
    if out is None or len(workdirs) == 1:
        return out
    return os.path.join(out, os.path.basename(os.path.normpath(workdir)))


def main(argv=None):
    cli.parse(FLAGS, argv, "launch.plot", __doc__)
    if not FLAGS.workdir:
        raise SystemExit("launch.plot: --workdir is required (repeat it for several runs).")
    from birds_tf.utils.workdir import NotAWorkdirError, check
    try:
        for path in FLAGS.workdir:
            check(path)  # before TensorFlow starts: a wrong path costs none of its start-up
    except NotAWorkdirError as e:
        raise SystemExit(f"launch.plot: {e}") from None
    from . import quiet
    quiet.start_tensorflow(FLAGS.verbosity)
    try:
        paths = run(FLAGS.kind, FLAGS.workdir, FLAGS.out, FLAGS.which, FLAGS.grid, FLAGS.span,
                    FLAGS.batches, FLAGS.loss, FLAGS.split, FLAGS.images, FLAGS.smooth_samples)
    except (NotAWorkdirError, ValueError) as e:
        raise SystemExit(f"launch.plot: {e}") from None
    for path in paths:
        print(path)
    return 0


def entry():
    """The ``birds-tf-plot`` console script: ``main`` with bad input as one line."""
    return cli.run(main, FLAGS, "launch.plot")


if __name__ == "__main__":
    sys.exit(entry())
