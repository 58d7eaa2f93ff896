r"""Workdirs -> the paper's Table 1 layout (Markdown on stdout, Markdown + CSV files).

  python -m launch.report runs/*
  python -m launch.report runs/dense runs/fb_plus --out_dir=reports --training_flops=paper

Every path must be a finished launch.train workdir (it holds results.json); anything else stops
the report with the offending path named.
"""
import argparse
import os
import sys


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m launch.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdirs", nargs="+", help="finished launch.train workdirs")
    parser.add_argument("--out_dir", help="write table.md and table.csv here")
    parser.add_argument("--csv", help="write the CSV table to this path")
    parser.add_argument("--markdown", help="write the Markdown table to this path")
    parser.add_argument("--training_flops", choices=("measured", "paper"), default="measured",
                        help="measured: integrated over the run's density; paper: 33 x F_inf "
                        "x N x epochs at the final density")
    parser.add_argument("--scale", choices=("auto", "paper"), default="auto",
                        help="FLOPs columns' power of ten (paper: x1e17 and x1e9)")
    return parser.parse_args(argv)


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
    from birds_tf.utils.files import atomic_write_text
    if markdown_path:
        atomic_write_text(markdown_path, md + "\n")
    if csv_path:
        atomic_write_text(csv_path, text)
    return md, text


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from birds_tf.utils.workdir import NotAWorkdirError
    try:
        md, _ = report(args.workdirs, args.out_dir, args.csv, args.markdown,
                       args.training_flops, args.scale)
    except NotAWorkdirError as e:
        raise SystemExit(f"launch.report: {e}") from None
    print(md)
    return 0


if __name__ == "__main__":
    main()
