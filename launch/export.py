r"""Export a trained workdir as a SavedModel with the masks folded into the kernels.

  python -m launch.export --workdir=runs/fb_plus --out=exported/fb_plus [--which=best|final]
      [--shrink] [--format=saved_model|litert]

The SavedModel's ``serve`` signature takes float32 images in [0, 1] (the input normaliser is
part of the model) and returns logits. ``metadata.json`` (per-layer density, FLOPs, SA/RA, the
config) and ``sparse_weights.npz`` (bit-packed masks + non-zero values) are written inside it.
``--shrink`` first removes the dead channels of a channel-level run (``fb_plus_channel``): a
narrower plain model with the same logits. ``--format=litert`` adds ``model.tflite`` (and
``model_sparse.tflite``, sparse storage: a smaller file, not a faster one on x86) next to it.
"""
import argparse
import sys

from launch import quiet  # noqa: E402  (before TensorFlow: keeps its C++ start-up lines quiet)

quiet.start_tensorflow()


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m launch.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, help="a finished launch.train workdir")
    parser.add_argument("--out", required=True, help="new folder for the SavedModel")
    parser.add_argument("--which", choices=("best", "final"), default="final",
                        help="checkpoint to export")
    parser.add_argument("--shrink", action="store_true",
                        help="remove dead channels (a channel-level run, e.g. fb_plus_channel)")
    parser.add_argument("--format", choices=("saved_model", "litert"), default="saved_model",
                        help="litert: also write .tflite files next to the SavedModel")
    return parser.parse_args(argv)


def _mb(n):
    return f"{n / 2 ** 20:.3f} MiB"


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from birds_tf.export import export_workdir
    try:
        meta = export_workdir(args.workdir, args.out, args.which, shrink=args.shrink,
                              litert=args.format == "litert")
    except ValueError as e:  # NotAWorkdirError included
        raise SystemExit(f"launch.export: {e}") from None
    sizes = meta["sizes_bytes"]
    print(f"exported {args.workdir} ({args.which}) to {args.out}: density "
          f"{meta['density']:.4f}, inference FLOPs {meta['inference_flops']:.4g} "
          f"(dense {meta['inference_flops_dense']:.4g})")
    print(f"weights: dense float32 {_mb(sizes['dense_float32'])}, dense zipped "
          f"{_mb(sizes['dense_zip'])}, sparse compressed {_mb(sizes['sparse_zip'])} "
          f"(sparse_weights.npz); SavedModel folder {_mb(sizes['saved_model'])}")
    for name in ("model.tflite", "model_sparse.tflite"):
        if name in sizes:
            print(f"LiteRT {name}: {_mb(sizes[name])}")
    if "shrink" in meta:
        ch = meta["shrink"]["channels"]
        print(f"shrunk: {sum(v['before'] for v in ch.values())} -> "
              f"{sum(v['after'] for v in ch.values())} removable channels, parameters "
              f"{meta['shrink']['parameters_before'] or 'n/a (shrunk during training)'} -> "
              f"{meta['shrink']['parameters_after']}")
    return 0


if __name__ == "__main__":
    main()
