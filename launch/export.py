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
import sys

from absl import flags

from . import cli

FLAGS = cli.new_flags()
flags.DEFINE_string("workdir", None, "A finished launch.train workdir (required).",
                    flag_values=FLAGS)
flags.DEFINE_string("out", None, "New folder for the SavedModel (required).", flag_values=FLAGS)
flags.DEFINE_enum("which", "final", ("best", "final"), "Checkpoint to export.",
                  flag_values=FLAGS)
flags.DEFINE_bool("shrink", False, "Remove the dead channels of a channel-level run "
                  "(fb_plus_channel) first: a narrower plain model with the same logits.",
                  flag_values=FLAGS)
flags.DEFINE_enum("format", "saved_model", ("saved_model", "litert"),
                  "litert: also write model.tflite (and model_sparse.tflite) next to the "
                  "SavedModel.", flag_values=FLAGS)


def _mb(n):
    return f"{n / 2 ** 20:.3f} MiB"


def main(argv=None):
    cli.parse(FLAGS, argv, "launch.export", __doc__)
    for name in ("workdir", "out"):
        if not FLAGS[name].value:
            raise SystemExit(f"launch.export: --{name} is required (see --help).")
    from birds_tf.utils.workdir import check
    try:
        check(FLAGS.workdir, need=())  # before TensorFlow starts: a wrong path costs nothing
    except ValueError as e:
        raise SystemExit(f"launch.export: {e}") from None
    from . import quiet
    quiet.start_tensorflow(FLAGS.verbosity)
    from birds_tf.export import export_workdir
    try:
        meta = export_workdir(FLAGS.workdir, FLAGS.out, FLAGS.which, shrink=FLAGS.shrink,
                              litert=FLAGS.format == "litert")
    except ValueError as e:  # NotAWorkdirError included
        raise SystemExit(f"launch.export: {e}") from None
    except OSError as e:  # a full disk: its own exit code (74)
        from . import common
        code = common.fault_exit("launch.export", e)
        if code is None:
            raise
        return code
    sizes = meta["sizes_bytes"]
    print(f"exported {FLAGS.workdir} ({FLAGS.which}) to {FLAGS.out}: density "
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


def entry():
    """The ``birds-tf-export`` console script: ``main`` with bad input as one line."""
    return cli.run(main, FLAGS, "launch.export")


if __name__ == "__main__":
    sys.exit(entry())
