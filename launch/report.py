r"""Workdirs -> the paper's Table 1 layout (Markdown on stdout, Markdown + CSV files).

  python -m launch.report runs/*
  python -m launch.report runs/dense runs/fb_plus --out_dir=reports --training_flops=paper

Every path must be a finished launch.train workdir (it holds results.json); anything else stops
the report with the offending path named. Reads JSON only: TensorFlow is never imported.
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


if __name__ == "__main__":
    sys.exit(cli.run(main, FLAGS, "launch.report"))
