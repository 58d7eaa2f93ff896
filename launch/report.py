r"""Workdirs -> the paper's Table 1 layout (Markdown on stdout, Markdown + CSV files).

  python -m launch.report runs/*
  python -m launch.report runs/dense runs/fb_plus --out_dir=reports --training_flops=paper
  python -m launch.report --results=results/table1_offline --update=RESULTS.md

Every path must be a finished launch.train workdir (it holds results.json); anything else stops
the report with the offending path named. With ``--results`` (a folder written by
``launch.reproduce --results_dir``) it prints the reproduced table of the committed runs (paired
statistics, per-seed numbers, commits and machines); ``--update`` writes it between that folder's
generated-block markers in a Markdown file (launch/committed.py). Reads JSON only: TensorFlow is
never imported.
"""
import os
import sys

from absl import flags

from . import cli

FLAGS = cli.new_flags()
flags.DEFINE_string("out_dir", None, "Write table.md and table.csv here.", flag_values=FLAGS)
flags.DEFINE_string("csv", None, "Write the CSV table to this path.", flag_values=FLAGS)
flags.DEFINE_string("markdown", None, "Write the Markdown table to this path.",
                    flag_values=FLAGS)
flags.DEFINE_enum("training_flops", "measured", ("measured", "paper"),
                  "measured: integrated over the run's density; paper: 33 x F_inf x N x epochs "
                  "at the final density.", flag_values=FLAGS)
flags.DEFINE_string("results", None, "A results folder of launch.reproduce --results_dir "
                    "(e.g. results/table1_offline): report its committed runs.",
                    flag_values=FLAGS)
flags.DEFINE_string("update", None, "With --results: replace that folder's generated block in "
                    "this Markdown file (e.g. RESULTS.md).", flag_values=FLAGS)
flags.DEFINE_enum("scale", "auto", ("auto", "paper"),
                  "FLOPs columns' power of ten (paper: x1e17 and x1e9).", flag_values=FLAGS)


def report(workdirs, out_dir=None, csv_path=None, markdown_path=None, training="measured",
           scale="auto"):
    """Build the tables; returns (markdown text, csv text) after writing the files asked for."""
    from birds_tf.metrics import table
    from birds_tf.utils import workdir as workdir_lib
    results = [workdir_lib.results(path) for path in workdirs]
    md = table.markdown(results, training=training, scale=scale)
    text = table.csv_text(results)
    if out_dir:
        markdown_path = markdown_path or os.path.join(out_dir, "table.md")
        csv_path = csv_path or os.path.join(out_dir, "table.csv")
    from birds_tf.utils.records import atomic_write_text
    if markdown_path:
        atomic_write_text(markdown_path, md + "\n")
    if csv_path:
        atomic_write_text(csv_path, text)
    return md, text


def main(argv=None):
    workdirs = cli.parse(FLAGS, argv, "launch.report", __doc__, positional=True)
    if FLAGS.update and not FLAGS.results:
        raise SystemExit("launch.report: --update needs --results (the folder whose block to "
                         "write).")
    if FLAGS.results:
        if workdirs:
            raise SystemExit(f"launch.report: give workdirs or --results, not both (got "
                             f"{workdirs}).")
        from . import committed
        try:
            if FLAGS.update:
                committed.update(FLAGS.update, [FLAGS.results])
                print(f"Updated {FLAGS.update} from {FLAGS.results}.")
            else:
                print(committed.block(FLAGS.results))
        except committed.ResultsFolderError as e:
            raise SystemExit(f"launch.report: {e}") from None
        return 0
    if not workdirs:
        raise SystemExit("launch.report: name at least one workdir (python -m launch.report "
                         "runs/*).")
    from birds_tf.utils.workdir import NotAWorkdirError
    try:
        md, _ = report(workdirs, FLAGS.out_dir, FLAGS.csv, FLAGS.markdown,
                       FLAGS.training_flops, FLAGS.scale)
    except NotAWorkdirError as e:
        raise SystemExit(f"launch.report: {e}") from None
    print(md)
    return 0


def entry():
    """The ``birds-tf-report`` console script: ``main`` with bad input as one line."""
    return cli.run(main, FLAGS, "launch.report")


if __name__ == "__main__":
    sys.exit(entry())
