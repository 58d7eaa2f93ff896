r"""Train one experiment from gin configs, TF-Agents ``train_eval`` style.

  python -m launch.train --gin_file=gin/table1/fb_plus_resnet18.gin --workdir=runs/fb_plus
  python -m launch.train --gin_file=gin/table1/dense_resnet18.gin \
      --gin_file=gin/quickstart/smoke.gin --workdir=runs/smoke
  python -m launch.train ... --verbosity=0    # INFO logs, Keras' full epoch line, TF start-up

Prints one line per epoch (loss, train RA, val/test SA and RA in percent; density and k for
sparse runs; seconds) and the results. Rerunning the same command on a workdir resumes from the
last completed epoch; a workdir that holds a different config is refused unless --overwrite
(which moves the old one aside).
"""
import sys

from absl import flags

from . import cli, common

FLAGS = cli.new_flags()
flags.DEFINE_multi_string("gin_file", [], "Gin config files, applied in order.",
                          flag_values=FLAGS)
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. \"train_eval.epochs=2\".",
                          flag_values=FLAGS)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results (required).",
                    flag_values=FLAGS)
flags.DEFINE_enum("strategy", "default", common.STRATEGIES,
                  "default (one device), mirrored (all local devices) or multi_worker "
                  "(MultiWorkerMirroredStrategy from TF_CONFIG).", flag_values=FLAGS)
flags.DEFINE_bool("overwrite", False, "Move an existing workdir with a different config aside "
                  "and start afresh.", flag_values=FLAGS)
flags.DEFINE_bool("resume_changed_config", False, "Resume an unfinished run with a changed "
                  "config (e.g. a lower train_eval.lr after a non-finite loss); the old config "
                  "and the epoch of the change are recorded in the workdir and results.json.",
                  flag_values=FLAGS)
flags.DEFINE_bool("deterministic", False, "Enable TF op determinism (slower; same seeds give "
                  "the same weights).", flag_values=FLAGS)


def run(gin_files, gin_bindings, workdir, strategy="default", overwrite=False,
        deterministic=False, verbose=None, resume_changed_config=False):
    """What ``main`` does, callable from tests and scripts; returns the results dict.

    Args:
      gin_files: gin config paths, applied in order.
      gin_bindings: extra bindings (``"train_eval.epochs = 2"``), applied after the files.
      workdir: the run's folder (created; resumed when it holds this config).
      strategy: "default", "mirrored" or "multi_worker".
      overwrite: move a workdir holding another config aside instead of refusing it.
      deterministic: enable TF op determinism.
      verbose: ``train_eval``'s console output: 0 none, 1 (None) one line per epoch, 2 also
        Keras' full line.
      resume_changed_config: resume an unfinished run under a changed config (recorded).

    Raises:
      WorkdirBusyError: another live process trains into ``workdir`` (its pid in the message).
      Preempted: a SIGTERM stopped the run after saving it; the same call resumes it.
    """
    from birds_tf.training import preemption
    from birds_tf.utils import lock
    config_text = common.parse_gin(gin_files, gin_bindings)
    held = lock.acquire(workdir, "launch.train run")
    try:
        common.claim_workdir(workdir, config_text, overwrite, resume_changed_config)
        if overwrite:  # the old run (and its lock file) may have moved aside
            held.release()
            held = lock.acquire(workdir, "launch.train run")
        if deterministic:
            import tensorflow as tf
            tf.config.experimental.enable_op_determinism()
        strategy = common.make_strategy(strategy)
        from birds_tf.experiment.train_eval import train_eval
        with preemption.on_sigterm():
            results = train_eval(workdir, strategy=strategy, verbose=verbose)
        common.write_operative_config(workdir)
        return results
    finally:
        held.release()


def main(argv=None):
    cli.parse(FLAGS, argv, "launch.train", __doc__)
    if not FLAGS.workdir:
        raise SystemExit("launch.train: --workdir is required (a new folder, or a run's folder "
                         "to resume it).")
    common.check_gin_files(FLAGS.gin_file)
    from . import quiet
    quiet.start_tensorflow(FLAGS.verbosity)
    try:
        results = run(FLAGS.gin_file, FLAGS.gin_bindings, FLAGS.workdir, FLAGS.strategy,
                      FLAGS.overwrite, FLAGS.deterministic, cli.train_verbose(FLAGS.verbosity),
                      FLAGS.resume_changed_config)
    except Exception as e:  # noqa: BLE001  faults with their own exit code; the rest re-raised
        code = common.fault_exit("launch.train", e)
        if code is None:
            raise
        return code
    print(common.results_row(results))
    return 0


def entry():
    """The ``birds-tf-train`` console script: ``main`` with bad input as one line."""
    return cli.run(main, FLAGS, "launch.train")


if __name__ == "__main__":
    sys.exit(entry())
