r"""Train one experiment from gin configs, TF-Agents ``train_eval`` style.

  python -m launch.train --gin_file=gin/fb_plus_resnet18.gin --workdir=runs/fb_plus
  python -m launch.train --gin_file=gin/dense_resnet18.gin --gin_file=gin/smoke.gin \
      --workdir=runs/smoke

Rerunning the same command on a workdir resumes from the last completed epoch; a workdir that
holds a different config is refused unless --overwrite (which moves the old one aside).
"""

from launch import quiet  # noqa: E402  (before TensorFlow: keeps its C++ start-up lines quiet)

quiet.start_tensorflow()

from absl import app, flags, logging  # noqa: E402

from launch import common  # noqa: E402

flags.DEFINE_multi_string("gin_file", [], "Gin config files, applied in order.")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. \"train_eval.epochs=2\".")
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
flags.DEFINE_enum("strategy", "default", common.STRATEGIES,
                  "default (one device), mirrored (all local devices) or multi_worker "
                  "(MultiWorkerMirroredStrategy from TF_CONFIG).")
flags.DEFINE_bool("overwrite", False, "Move an existing workdir with a different config aside "
                  "and start afresh.")
flags.DEFINE_bool("deterministic", False, "Enable TF op determinism (slower; same seeds give "
                  "the same weights).")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def run(gin_files, gin_bindings, workdir, strategy="default", overwrite=False,
        deterministic=False, verbose=None):
    """What ``main`` does, callable from tests and scripts; returns the results dict."""
    config_text = common.parse_gin(gin_files, gin_bindings)
    common.claim_workdir(workdir, config_text, overwrite)
    if deterministic:
        import tensorflow as tf
        tf.config.experimental.enable_op_determinism()
    strategy = common.make_strategy(strategy)
    from birds_tf.experiment.train_eval import train_eval
    results = train_eval(workdir, strategy=strategy, verbose=verbose)
    common.write_operative_config(workdir)
    return results


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    results = run(FLAGS.gin_file, FLAGS.gin_bindings, FLAGS.workdir, FLAGS.strategy,
                  FLAGS.overwrite, FLAGS.deterministic)
    print(common.results_row(results))


if __name__ == "__main__":
    app.run(main)
