r"""Robust accuracy of a trained workdir or an exported SavedModel under a list of attacks.

  python -m launch.evaluate --workdir=runs/fb_plus [--which=best|final] [--split=test|val|train]
  python -m launch.evaluate --workdir=runs/fb_plus --attacks=pgd20,cw_l2,apgd_ce,square --n=1000
  python -m launch.evaluate --saved_model=exported/fb_plus --dataset=cifar10
  python -m launch.evaluate --saved_model=exported/fb_plus --data=my_images.npz   # x in [0,1], y
  python -m launch.evaluate --workdir=runs/fb_plus --transfer_from=runs/dense     # Table A7 row
  python -m launch.evaluate --workdir=runs/demo/dense --eps=0.1 \
      --attack_option=autoattack.n_iter=10 --attack_option=autoattack.n_queries=100  # quick

Prints attack | robust acc % | n | seconds and writes a JSON report (default
<workdir>/eval_<split>_<which>.json, or <saved_model>.eval_<split>.json beside a SavedModel) with
clean accuracy, eps, the model path, per-attack robust accuracy / n / seconds, the transfer row
and any sanity-check warnings. Every flag is checked before a model is loaded.
"""
import sys

from absl import flags

from . import cli

# Own FlagValues (launch.cli): launch.train defines --workdir too, and tests import both.
FLAGS = cli.new_flags()
flags.DEFINE_string("workdir", None, "A launch.train workdir (checkpoints/<which>.keras).",
                    flag_values=FLAGS)
flags.DEFINE_string("saved_model", None, "A SavedModel folder (saved_model.pb; e.g. from "
                    "launch.export) whose serve() maps [0, 1] images to logits.",
                    flag_values=FLAGS)
flags.DEFINE_string("which", "best", "Workdir checkpoint: best or final.", flag_values=FLAGS)
flags.DEFINE_string("split", "test", "Dataset split: test, val or train.", flag_values=FLAGS)
flags.DEFINE_string("dataset", None, "Dataset name (default: the workdir's; required for a "
                    "SavedModel without metadata.json unless --data).", flag_values=FLAGS)
flags.DEFINE_string("data_dir", None, "Where the dataset lives (default: the workdir's).",
                    flag_values=FLAGS)
flags.DEFINE_string("data", None, "Your own .npz with x (N x H x W x C in [0, 1]) and integer "
                    "labels y; replaces --dataset/--split.", flag_values=FLAGS)
flags.DEFINE_string("attacks", "pgd20,cw_l2,autoattack", "Comma-separated attacks: pgd20, "
                    "cw_l2 (the paper's CW), cw_inf, apgd_ce, apgd_t, fab_t, square, autoattack.",
                    flag_values=FLAGS)
flags.DEFINE_string("eps", "8/255", "L-inf radius: a number or a fraction like 8/255.",
                    flag_values=FLAGS)
flags.DEFINE_integer("n", None, "Evaluate the first N examples (default: all).",
                     flag_values=FLAGS)
flags.DEFINE_integer("batch_size", 256, "Examples per attack batch.", flag_values=FLAGS)
flags.DEFINE_multi_string("attack_option", [], "ATTACK.OPTION=VALUE overriding an attack's "
                          "standard setting, e.g. autoattack.n_iter=10 (repeatable).",
                          flag_values=FLAGS)
flags.DEFINE_string("transfer_from", None, "Workdir or SavedModel to craft examples on; the "
                    "evaluated model is scored on them (its own report row).", flag_values=FLAGS)
flags.DEFINE_string("transfer_attack", "pgd20", "Attack used on --transfer_from.",
                    flag_values=FLAGS)
flags.DEFINE_string("out", None, "JSON report path.", flag_values=FLAGS)
flags.DEFINE_bool("sanity", True, "Run the robustness sanity checks (warnings in the report).",
                  flag_values=FLAGS)
flags.DEFINE_bool("large_eps_check", False, "Also check that PGD at eps=0.5 breaks the model "
                  "(a gradient-masking test; costs one more attack).", flag_values=FLAGS)
flags.DEFINE_bool("progress", True, "A progress bar per attack (one line per attack when "
                  "stderr is not a terminal).", flag_values=FLAGS)


def parse_eps(text):
    """'8/255' or '0.031' -> float; anything else is refused by name."""
    try:
        if "/" in str(text):
            num, den = str(text).split("/", 1)
            return float(num) / float(den)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"--eps must be a number or a fraction like 8/255, got {text!r}.")


def _fail(message):
    raise SystemExit(f"launch.evaluate: {message}")


def main(argv=None):
    try:
        cli.parse(FLAGS, argv, "launch.evaluate", __doc__)
    except SystemExit as e:
        if e.code in (0, None):  # --help
            return 0
        raise
    if bool(FLAGS.workdir) == bool(FLAGS.saved_model):
        _fail("pass exactly one of --workdir=DIR (a launch.train run) or --saved_model=DIR.")
    try:
        eps = parse_eps(FLAGS.eps)  # before TensorFlow starts: a typo costs none of its start-up
    except ValueError as e:
        _fail(e)
    from . import quiet
    quiet.start_tensorflow(FLAGS.verbosity)
    from birds_tf.evaluation import report as report_lib
    try:
        report, out = report_lib.evaluate_path(
            FLAGS.workdir or FLAGS.saved_model, which=FLAGS.which, split=FLAGS.split,
            dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, data=FLAGS.data,
            attacks=FLAGS.attacks, eps=eps, n=FLAGS.n,
            batch_size=FLAGS.batch_size, attack_options=FLAGS.attack_option,
            transfer_from=FLAGS.transfer_from, transfer_attack=FLAGS.transfer_attack,
            out=FLAGS.out, sanity=FLAGS.sanity, large_eps_check=FLAGS.large_eps_check,
            progress=FLAGS.progress)
    except (ValueError, FileNotFoundError) as e:  # NotAWorkdirError, DatasetNotFoundError too
        _fail(e)
    where = report["data"] or f"{report['dataset']} {report['split']}"
    print(f"{report['model']} on {where}, eps={report['eps']:.4g}")
    print(report_lib.format_table(report))
    for warning in report["warnings"]:
        print(f"WARNING: {warning}")
    print(f"report: {out}")
    return 0


def entry():
    """The ``birds-tf-evaluate`` console script: ``main`` with bad input as one line."""
    return cli.run(main, FLAGS, "launch.evaluate")


if __name__ == "__main__":
    sys.exit(entry())
