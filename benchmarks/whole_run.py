"""A whole run's wall time, dense against ``fb_plus_channel``, side by side (issue 26 item 1).

  python -m benchmarks.whole_run [--shape=offline|cifar] [--seeds=2] [--threads=1]
      [--sparse_gin=gin/beyond_paper/fb_plus_channel_resnet18.gin]
      [--out=results/bench/whole_run_offline.json]

Why: channels removed during training make the epochs after each rebuild faster, but a run also
pays for the epochs before it, the rebuilds (a checkpoint, a retrace) and the evaluation. Only
the whole run's wall time says whether sparsity paid.

Each run is its own ``python -m launch.train`` process (one process tree, this one its parent),
the two methods through the same schedule with evaluation included, alternated per seed (seed 1
dense first, seed 2 sparse first, ...) so that a drift of the machine's load hits both alike;
every process gets the same thread count (``TF_NUM_INTRAOP_THREADS`` / ``INTEROP`` and
``OMP_NUM_THREADS``; ``--threads=0`` leaves TensorFlow's default). Shapes:

  offline  ``gin/offline/offline.gin`` exactly (RESULTS.md's setting: animals, width 8, 64
           epochs, final test included); sparse: ``--sparse_gin`` +
           ``gin/offline/offline_fb_plus_channel.gin``;
  cifar    PreActResNet-18 width 64 on 32x32x3 synthetic images, 6 short epochs
           (``gin/beyond_paper/whole_run_cifar.gin``: its header gives the sizes).

Printed: one JSON line per run (whole wall seconds of the process, the run's own ``seconds``,
per-epoch seconds of each segment between shrinks, RA/SA final and best) and a last line with the
ratios sparse / dense of whole-run wall time: per seed, their mean, and the ratio of the mean
wall times. ``--out`` writes the same figures as one JSON file (e.g. under ``results/bench/``).
"""
import csv
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from absl import flags

from benchmarks import flag_args, pgd_at
from launch import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROG = "benchmarks.whole_run"
DENSE_GIN = "gin/table1/dense_resnet18.gin"
SHAPE_GIN = {"offline": {"dense": "gin/offline/offline.gin",
                         "sparse": "gin/offline/offline_fb_plus_channel.gin"},
             "cifar": {"dense": "gin/beyond_paper/whole_run_cifar.gin",
                       "sparse": "gin/beyond_paper/whole_run_cifar.gin"}}

FLAGS = cli.new_flags()
flags.DEFINE_enum("shape", "offline", tuple(SHAPE_GIN), "offline (RESULTS.md's setting) or "
                  "cifar (PreActResNet-18 w64, 32x32x3 synthetic data, a few epochs).",
                  flag_values=FLAGS)
flags.DEFINE_integer("seeds", 2, "Seeds 1..N, each a dense and a sparse run.", lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_integer("threads", 1, "Threads of every run (0: TensorFlow's default).",
                     lower_bound=0, flag_values=FLAGS)
flags.DEFINE_string("sparse_gin", "gin/beyond_paper/fb_plus_channel_resnet18.gin",
                    "The sparse run's config (a fb_plus_channel gin file, relative to the "
                    "repository).", flag_values=FLAGS)
flags.DEFINE_integer("epochs", 0, "cifar shape only: train this many epochs instead of the "
                     "shape's 6, the schedule scaled alike (scaled_schedule); 0: the shape's own.",
                     lower_bound=0, flag_values=FLAGS)
flags.DEFINE_multi_string("bindings", [], "Extra gin bindings for both runs (e.g. "
                          "\"train_eval.epochs=2\"; tests shrink the runs with them).",
                          flag_values=FLAGS)
flags.DEFINE_string("out", None, "Write the figures as one JSON file here.", flag_values=FLAGS)
flags.DEFINE_string("workdir", None, "Keep the runs' workdirs here (default: a temporary folder, "
                    "deleted at the end).", flag_values=FLAGS)


def thread_env(threads):
    """The environment of every run: ``threads`` for TensorFlow and OpenMP (0: untouched)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    if threads:
        n = str(threads)
        env.update(OMP_NUM_THREADS=n, TF_NUM_INTRAOP_THREADS=n, TF_NUM_INTEROP_THREADS=n)
    return env


def run_order(seeds):
    """``[(seed, method), ...]``: seed 1 dense first, seed 2 sparse first, alternating."""
    order = []
    for seed in range(1, seeds + 1):
        pair = ("dense", "sparse") if seed % 2 else ("sparse", "dense")
        order += [(seed, m) for m in pair]
    return order


# The paper's CIFAR schedule (Table A5): 200 epochs, lr x0.1 at 100 and 150, Flying Bird+'s
# adaptation from epoch 100; whole_run_cifar.gin scales it to 6 epochs as (3, 5) and 3.
PAPER_EPOCHS, PAPER_MILESTONES, PAPER_T_START = 200, (100, 150), 100


def scaled_schedule(epochs):
    """Gin bindings for a cifar-shape run of ``epochs`` epochs: the paper's milestones and
    adaptation start scaled from 200 epochs, rounded half up (6 epochs: (3, 5) and 3, the
    values of ``gin/beyond_paper/whole_run_cifar.gin``)."""
    if epochs < 2:
        raise ValueError(f"--epochs must be at least 2 (a schedule with a learning-rate step), "
                         f"got {epochs}.")

    def scale(e):
        return max(1, int(math.floor(e * epochs / PAPER_EPOCHS + 0.5)))

    milestones = tuple(scale(m) for m in PAPER_MILESTONES)
    return [f"train_eval.epochs = {epochs}", f"train_eval.milestones = {milestones}",
            f"DynamicSparsity.t_start = {scale(PAPER_T_START)}"]


def gin_files(shape, method, sparse_gin):
    return [DENSE_GIN if method == "dense" else sparse_gin, SHAPE_GIN[shape][method]]


def segments(epoch_seconds, shrinks):
    """Per-epoch seconds split at each shrink.

    Args:
      epoch_seconds: ``{epoch (1-based): seconds}`` (``metrics.csv``).
      shrinks: ``results.json``'s ``shrinks``; a shrink at ``epoch`` e rebuilt the model after
        epoch e, so epochs e+1.. ran on the narrower one.
    Returns:
      ``[{"epochs": [first, last], "mean_s", "first_s", "rest_mean_s"}]``: ``first_s`` (the
      epoch after a start or rebuild, which traces the graphs) apart from the rest's mean.
    """
    epochs = sorted(epoch_seconds)
    if not epochs:
        return []
    cuts = sorted({int(s["epoch"]) for s in shrinks or ()})
    bounds, start = [], epochs[0]
    for cut in cuts + [epochs[-1]]:
        if cut >= start:
            bounds.append((start, cut))
            start = cut + 1
    out = []
    for first, last in bounds:
        secs = [epoch_seconds[e] for e in epochs if first <= e <= last]
        if not secs:
            continue
        rest = secs[1:]
        out.append({"epochs": [first, last], "mean_s": round(statistics.mean(secs), 3),
                    "first_s": round(secs[0], 3),
                    "rest_mean_s": round(statistics.mean(rest), 3) if rest else None})
    return out


def read_run(workdir):
    """``{epoch: seconds}`` from ``metrics.csv`` and the ``results.json`` of a finished run."""
    from birds_tf.utils.workdir import Workdir
    files = Workdir(workdir)
    with open(files.metrics_csv, newline="") as f:
        epoch_seconds = {int(r["epoch"]): float(r["seconds"]) for r in csv.DictReader(f)}
    with open(files.results_json) as f:
        results = json.load(f)
    return epoch_seconds, results


def run_line(seed, method, wall, epoch_seconds, results):
    """The figures of one run (what is printed and written)."""
    line = {"name": f"whole_run/{method}", "seed": seed, "method": results.get("method"),
            "wall_s": round(wall, 2), "run_seconds": round(float(results["seconds"]), 2),
            "epochs": len(epoch_seconds),
            "segments": segments(epoch_seconds, results.get("shrinks")),
            "shrinks": [{"epoch": s["epoch"], "channels": sum(s["channels"].values())}
                        for s in results.get("shrinks") or ()]}
    for key in ("ra_final", "sa_final", "ra_best", "sa_best", "final_test_seconds",
                "channel_sparsity", "final_sparsity_vs_original", "training_flops"):
        if results.get(key) is not None:
            line[key] = results[key]
    return line


def _steady_s(line):
    """Seconds of an epoch in the run's last segment, its first (tracing) epoch left out:
    what each further epoch of a longer run would cost (``None`` if that segment has one epoch)."""
    last = (line.get("segments") or [{}])[-1]
    return last.get("rest_mean_s")


def summary(lines):
    """Ratios sparse / dense of whole-run wall time, pairing the runs by seed.

    ``per_seed``: sparse wall / dense wall of each seed; ``ratio``: their mean;
    ``ratio_of_means``: mean sparse wall / mean dense wall; ``steady_epoch_ratio``: the mean over
    seeds of sparse / dense seconds of an epoch after the last shrink (``_steady_s``), the ratio
    a long run tends to. RA/SA: per-seed sparse - dense.
    """
    by = {(ln["seed"], ln["name"].split("/")[-1]): ln for ln in lines}
    seeds = sorted({s for s, m in by if (s, "dense") in by and (s, "sparse") in by})
    if not seeds:
        raise ValueError("no seed has both a dense and a sparse run")
    dense = [by[(s, "dense")] for s in seeds]
    sparse = [by[(s, "sparse")] for s in seeds]
    per_seed = [sp["wall_s"] / d["wall_s"] for sp, d in zip(sparse, dense)]
    out = {"name": "whole_run_ratio", "seeds": seeds,
           "ratio": round(statistics.mean(per_seed), 4),
           "per_seed": [round(r, 4) for r in per_seed],
           "ratio_of_means": round(statistics.mean(sp["wall_s"] for sp in sparse)
                                   / statistics.mean(d["wall_s"] for d in dense), 4),
           "dense_wall_s": [d["wall_s"] for d in dense],
           "sparse_wall_s": [sp["wall_s"] for sp in sparse]}
    steady = [_steady_s(sp) / _steady_s(d) for sp, d in zip(sparse, dense)
              if _steady_s(sp) and _steady_s(d)]
    if len(steady) == len(seeds):
        out["steady_epoch_ratio"] = round(statistics.mean(steady), 4)
        out["steady_epoch_ratio_per_seed"] = [round(r, 4) for r in steady]
    for key in ("ra_final", "sa_final"):
        if all(key in ln for ln in dense + sparse):
            out[f"{key}_sparse_minus_dense"] = [round(sp[key] - d[key], 3)
                                                for sp, d in zip(sparse, dense)]
    return out


def _load_average():
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def train(shape, method, seed, sparse_gin, bindings, workdir, env):
    """One ``launch.train`` process; returns its wall seconds (a failure raises with its log)."""
    cmd = [sys.executable, "-m", "launch.train", f"--workdir={workdir}"]
    cmd += [f"--gin_file={g}" for g in gin_files(shape, method, sparse_gin)]
    cmd += [f"--gin_bindings=train_eval.seed={seed}"] + [f"--gin_bindings={b}" for b in bindings]
    log = workdir + ".log"
    with open(log, "w") as f:
        t0 = time.perf_counter()
        code = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
        wall = time.perf_counter() - t0
    if code != 0:
        with open(log) as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {code}):\n{tail}")
    return wall


def run_name(shape, method, seed):
    return f"{shape}_{method}_seed{seed}"


def check(a):
    """Bad inputs, before any run starts."""
    for seed, method in run_order(a.seeds) if a.workdir else ():
        path = os.path.join(a.workdir, run_name(a.shape, method, seed))
        if os.path.exists(path):
            raise ValueError(f"--workdir {a.workdir!r} already holds {path!r}; give another "
                             "--workdir (runs are never overwritten).")
    path = os.path.join(ROOT, a.sparse_gin)
    if not os.path.isfile(path):
        raise ValueError(f"--sparse_gin {a.sparse_gin!r} is not a file of the repository "
                         "(e.g. gin/beyond_paper/fb_plus_channel_resnet18.gin).")
    with open(path) as f:
        if "fb_plus_channel" not in f.read():
            raise ValueError(f"--sparse_gin {a.sparse_gin!r} is not a fb_plus_channel config "
                             "(it neither sets nor includes one).")
    if a.epochs and a.shape != "cifar":
        raise ValueError(f"--epochs={a.epochs} is for --shape=cifar; the offline shape is "
                         "RESULTS.md's setting (64 epochs) as it is. Drop --epochs.")
    if a.epochs:
        scaled_schedule(a.epochs)
    if a.out and os.path.isdir(a.out):
        raise ValueError(f"--out {a.out!r} is a folder; give a file name, e.g. "
                         f"{os.path.join(a.out, 'whole_run_' + a.shape + '.json')}.")


def main(argv=None):
    """Runs the pairs, prints a JSON line per run and the summary; returns the summary.

    Args:
      argv: the flags, without the program name (default ``sys.argv[1:]``).
    """
    cli.parse(FLAGS, argv, PROG, __doc__)
    a = flag_args.args(FLAGS)
    check(a)
    env = thread_env(a.threads)
    bindings = (scaled_schedule(a.epochs) if a.epochs else []) + list(a.bindings)
    header = {"name": "header", "cpu": pgd_at.cpu_model(),
              "cpu_flags": pgd_at.cpu_flags(),
              "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
              "logical_cpus": os.cpu_count(),
              "commit": pgd_at.commit(), "threads": a.threads or "default", "shape": a.shape,
              "sparse_gin": a.sparse_gin, "bindings": bindings,
              "load_average_start": _load_average()}
    print(json.dumps(header), flush=True)
    base = a.workdir or tempfile.mkdtemp(prefix="whole_run_")
    os.makedirs(base, exist_ok=True)
    lines = []
    try:
        for seed, method in run_order(a.seeds):
            workdir = os.path.join(base, run_name(a.shape, method, seed))
            wall = train(a.shape, method, seed, a.sparse_gin, bindings, workdir, env)
            line = run_line(seed, method, wall, *read_run(workdir))
            print(json.dumps(line), flush=True)
            lines.append(line)
    finally:
        if not a.workdir:
            shutil.rmtree(base, ignore_errors=True)
    result = summary(lines)
    header["load_average_end"] = _load_average()
    print(json.dumps(result), flush=True)
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump({"header": header, "runs": lines, "summary": result}, f, indent=1)
            f.write("\n")
    return result


def entry(argv=None):
    """``python -m benchmarks.whole_run``: ``main`` with a bad input as one line; exit status."""
    return flag_args.entry(main, FLAGS, PROG, argv)


if __name__ == "__main__":
    sys.exit(entry())
