"""``make demo``: robust overfitting, and what sparsity does to it, in about ten minutes on a CPU.

Dense PGD-AT and Flying Bird+ (80% sparsity), one seed, at the offline scale of
``launch.reproduce`` (``gin/offline/offline.gin``: animal silhouettes, a narrow PreActResNet-18
and a CPU schedule, chosen once on the dense row's validation split; RESULTS.md "Choosing the
setting"), scored as RESULTS.md's table is (best and final models on the whole test split with
PGD-20), so the demo's numbers are seed 1 of that table's two rows. Prints Table 1's layout with
RGG and its reduction, and saves the figure of train vs test robust accuracy per epoch. Rerunning
resumes or reuses finished runs. The other rows and seeds are RESULTS.md's (``launch.reproduce``).
"""
import os
import sys
import time

from . import cli

FLAGS = cli.new_flags()  # --verbosity only
ROWS = ("dense", "fb_plus")
OUT = os.path.join("runs", "demo")


def main(out=OUT, rows=ROWS, argv=None):
    cli.parse(FLAGS, argv, "launch.demo", __doc__)
    from . import quiet
    quiet.start_tensorflow(FLAGS.verbosity)
    from . import reproduce
    start = time.time()
    print(f"Training {', '.join(rows)} (table 1 rows) on the animal silhouettes, offline scale "
          f"(gin/offline/offline.gin), into {out}/<row>/seed1", flush=True)
    try:
        reproduce.run("1", seeds=1, scale="offline", out=out, rows=list(rows),
                      verbose=cli.train_verbose(FLAGS.verbosity))
    except reproduce.ReproduceError as e:
        raise SystemExit(f"make demo: {e}") from None
    workdirs = [os.path.join(out, row, "seed1") for row in rows]
    from . import report
    md, _ = report.report(workdirs, markdown_path=os.path.join(out, "demo_table.md"),
                          csv_path=os.path.join(out, "demo_table.csv"))
    from birds_tf.plots import accuracy_figure
    figure = accuracy_figure(workdirs, out)[0]
    from birds_tf.metrics.reproduction import describe_config
    from birds_tf.utils.workdir import Workdir
    trained = describe_config(Workdir(workdirs[0]).read_config())
    print()
    print(f"One seed (seed 1) of {trained}.")
    print(md)
    print("RGG: robust accuracy on the training images minus test robust accuracy (final model);"
          " RGG reduction: the dense RGG minus the row's. This is ONE seed, an anecdote: "
          "RESULTS.md has the table over 10 seeds with paired intervals (and how to rerun it).")
    print(f"Figure (train vs test robust accuracy per epoch): {figure}")
    print(f"Tables: {os.path.join(out, 'demo_table.md')}, {os.path.join(out, 'table.md')} "
          f"(next to the paper's numbers). Wall time {time.time() - start:.0f} s.")
    return 0


def entry():
    """The ``birds-tf-demo`` console script: ``main`` with bad input as one line."""
    return cli.run(main, FLAGS, "launch.demo")


if __name__ == "__main__":
    sys.exit(entry())
