r"""The paper's figures from workdirs, as PNG files (also logged to each workdir's TensorBoard).

  python -m launch.plot --kind=accuracy --workdir=runs/dense --workdir=runs/fb_plus
  python -m launch.plot --kind=all --workdir=runs/fb_plus --out=figures

Kinds: accuracy (Figure 1), density (A11), layer_density (A10), mask_similarity (A8),
landscape (3/5), gradcam and saliency (6), or all. Figures of several runs (accuracy,
layer_density, gradcam, saliency) go to --out, else to the first workdir's figures/ folder;
per-run figures go to --out, else to each workdir's figures/ folder.
"""
import argparse
import os
import sys

from launch import quiet  # noqa: E402  (before TensorFlow: keeps its C++ start-up lines quiet)

quiet.start_tensorflow()

KINDS = ("accuracy", "density", "layer_density", "mask_similarity", "landscape", "gradcam",
         "saliency")
PER_RUN = ("density", "mask_similarity", "landscape")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m launch.plot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=KINDS + ("all",), default="all")
    parser.add_argument("--workdir", action="append", required=True,
                        help="a finished launch.train workdir (repeat for several runs)")
    parser.add_argument("--out", help="folder for the PNGs (default: <workdir>/figures)")
    parser.add_argument("--which", choices=("best", "final"), default="final",
                        help="checkpoint for landscape / gradcam / saliency")
    parser.add_argument("--grid", type=int, default=11, help="landscape grid points per axis")
    parser.add_argument("--span", type=float, default=1.0, help="landscape half-width")
    parser.add_argument("--batches", type=int, default=2, help="landscape batches")
    parser.add_argument("--loss", choices=("robust", "clean"), default="robust",
                        help="landscape loss: PGD (eval settings) or clean")
    parser.add_argument("--split", choices=("train", "val", "test"), default="train",
                        help="landscape data split")
    parser.add_argument("--images", type=int, default=6, help="gradcam / saliency images (>= 2)")
    parser.add_argument("--smooth_samples", type=int, default=0,
                        help="SmoothGrad samples for saliency (0 = vanilla gradient)")
    return parser.parse_args(argv)


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
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from birds_tf.utils.workdir import NotAWorkdirError
    try:
        paths = run(args.kind, args.workdir, args.out, args.which, args.grid, args.span,
                    args.batches, args.loss, args.split, args.images, args.smooth_samples)
    except (NotAWorkdirError, ValueError) as e:
        raise SystemExit(f"launch.plot: {e}") from None
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    main()
