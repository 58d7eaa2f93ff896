r"""Reproduce a table of the paper: every row's config x seeds, then mean +- std next to the paper.

  python -m launch.reproduce --table=1 --scale=offline --seeds=10 \
      --rows=dense,small_dense,fb,fb_plus --results_dir=results/table1_offline
  python -m launch.reproduce --table=2 --scale=paper --seeds=3 --out=runs/table2   # a GPU job
  python -m launch.reproduce --table=1 --scale=smoke --seeds=2 --rows=dense,fb_plus  # a test size

Each run trains into ``<out>/<row>/seed<k>/`` with ``launch.train``'s run function and
``train_eval.seed = k``; rerunning the command resumes an interrupted run from its last epoch and
reuses finished ones, so a sweep can be stopped and continued at any time. The paper's numbers come
from ``birds_tf/metrics/paper_tables.csv``; the table goes to stdout, ``<out>/table.md`` and
``<out>/table.csv``, and a TensorBoard HParams summary to ``<out>/hparams``.

Results as data: with ``--results_dir=results/table1_offline`` every finished run's small files
(``results.json``, ``metrics.csv``, ``config.json``, ``config.gin`` and ``run.json``: commit,
machine, wall time) are copied to ``<results_dir>/<row>/seed<k>/``, the table to
``<results_dir>/table.csv``; kilobytes, meant to be committed. A run found there with the same
config counts as finished and is not trained again, so a table can be completed across machines
(commit the folder, pull, rerun the command). ``python -m launch.report
--results=results/table1_offline --update=RESULTS.md`` turns the folder into RESULTS.md's tables.

Rows beyond the paper's table (no published numbers): ``fb_plus_channel`` in Table 1
(channel-level Flying Bird+, issue 17) and ``fb_plus_channel_fast`` (its channels out earlier and
three quarters of them, the whole-run speed configuration of issue 26).

Scales: ``paper`` runs the gin files as they are (CIFAR / Tiny-ImageNet, 200 epochs);
``offline`` layers ``gin/offline/offline.gin`` (animal silhouettes, a CPU schedule; its header
documents the mapping) and narrows WideResNet-34-10 to base width 2 (1/8, like the others' 8 of 64);
``smoke`` layers ``gin/quickstart/smoke.gin`` (digits, two tiny epochs).
"""
import json
import os
import platform
import shutil
import subprocess
import sys
import time

from absl import flags

from . import cli

SCALES = ("paper", "offline", "smoke")
SCALE_GIN = {"paper": [], "offline": ["gin/offline/offline.gin"],
             "smoke": ["gin/quickstart/smoke.gin"]}
# Offline scale: every architecture at 1/8 of its paper width (offline.gin binds 8 of 64).
OFFLINE_ARCH_BINDINGS = {"wide_resnet34_10": ["train_eval.arch_kwargs = {'width': 2}"]}
MARKER = "reproduce.json"
# Rows run beside a paper table that the paper does not have: (table, row id, gin, group,
# dataset, arch, sparsity, method, setting).
EXTRA_ROWS = (("1", "fb_plus_channel", "gin/beyond_paper/fb_plus_channel_resnet18.gin", "CIFAR-10",
               "cifar10", "preact_resnet18", 80.0, "fb_plus_channel", "Flying Bird+ (channel)"),
              ("1", "fb_plus_channel_fast", "gin/beyond_paper/fb_plus_channel_fast_resnet18.gin",
               "CIFAR-10", "cifar10", "preact_resnet18", 80.0, "fb_plus_channel",
               "Flying Bird+ (channel, fast)"),)

FLAGS = cli.new_flags()
flags.DEFINE_string("table", None, "Paper table: 1, 2, 3, A6, A10, A11, A12 or A17 (required).",
                    flag_values=FLAGS)
flags.DEFINE_integer("seeds", 1, "Seeds per row (train_eval.seed = 1..N).", flag_values=FLAGS)
flags.DEFINE_enum("scale", "paper", SCALES, "paper: the gin files as they are; offline: animal "
                  "silhouettes on a CPU schedule (gin/offline/offline.gin); smoke: test size.",
                  flag_values=FLAGS)
flags.DEFINE_string("out", None, "Output folder (default runs/reproduce/table<T>_<scale>).",
                    flag_values=FLAGS)
flags.DEFINE_list("rows", None, "Only these rows of the table (ids as in "
                  "birds_tf/metrics/paper_tables.csv, e.g. dense,rb,fb,fb_plus).",
                  flag_values=FLAGS)
flags.DEFINE_string("results_dir", None, "Copy each finished run's small files (results.json, "
                    "metrics.csv, config, run record) and the table here, e.g. "
                    "results/table1_offline; runs already there count as finished.",
                    flag_values=FLAGS)
flags.DEFINE_multi_string("extra_gin_bindings", [], "Gin bindings for every run, after the "
                          "scale's layer, e.g. \"train_eval.data_dir='DIR'\" for CIFAR.",
                          flag_values=FLAGS)


class ReproduceError(ValueError):
    """Bad input to launch.reproduce, found before any training."""


def default_out(table, scale):
    from birds_tf.metrics import paper
    try:
        key = paper.table(table)[0].table
    except ValueError as e:
        raise ReproduceError(str(e)) from None
    return os.path.join("runs", "reproduce", f"table{key}_{scale}")


def table_rows(table):
    """The paper's rows of ``table`` and then our extra rows for it (``EXTRA_ROWS``)."""
    from birds_tf.metrics import paper
    try:
        rows = list(paper.table(table))
    except ValueError as e:
        raise ReproduceError(str(e)) from None
    key = rows[0].table
    for extra in EXTRA_ROWS:
        if extra[0] == key:
            rows.append(paper.PaperRow(*extra, values={m: None for m in paper.METRICS}))
    return rows


def plan(table, seeds, scale, out, rows=None, gin_bindings=(), results_dir=None):
    """Check everything and list the runs; raises ReproduceError before any training.

    Returns (paper rows selected, [(row, seed, gin files, bindings, workdir)], table key).
    """
    all_rows = table_rows(table)
    key = all_rows[0].table
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ReproduceError(f"--seeds must be an integer >= 1, got {seeds!r}.")
    if scale not in SCALES:
        raise ReproduceError(f"Unknown --scale {scale!r}; allowed: {SCALES}.")
    ids = [r.row for r in all_rows]
    if rows:
        unknown = [r for r in rows if r not in ids]
        if unknown:
            raise ReproduceError(f"Table {key} has no row {', '.join(map(repr, unknown))}; its "
                                 f"rows: {', '.join(ids)}.")
        selected = [r for r in all_rows if r.row in rows]
    else:
        selected = list(all_rows)
    from birds_tf.experiment.configs import find_config  # as given, then birds-tf's configs
    missing = [r for r in selected if find_config(r.gin) is None]
    if missing:
        have = [r.row for r in selected if find_config(r.gin) is not None]
        raise ReproduceError(
            f"Table {key} needs configs that do not exist: "
            f"{', '.join(f'{r.gin} (row {r.row})' for r in missing)}. Write them, or pass "
            f"--rows with rows that have one" + (f" (e.g. --rows={','.join(have)})." if have
                                                 else "."))
    for path in SCALE_GIN[scale]:
        if find_config(path) is None:
            raise ReproduceError(f"Scale {scale!r} needs {path}, which is neither in the current "
                                 "directory nor among birds-tf's configs.")
    _check_out(out, key, scale)
    if results_dir:
        if os.path.abspath(results_dir) == os.path.abspath(out):
            raise ReproduceError(f"--results_dir {results_dir!r} is --out; give the folder to "
                                 "commit its own path (e.g. results/table1_offline).")
        _check_out(results_dir, key, scale, "--results_dir")
    runs = []
    for r in selected:
        extra = OFFLINE_ARCH_BINDINGS.get(r.arch, []) if scale == "offline" else []
        for k in range(1, seeds + 1):
            runs.append((r, k, [r.gin] + SCALE_GIN[scale],
                         extra + list(gin_bindings) + [f"train_eval.seed = {k}"],
                         os.path.join(out, r.row, f"seed{k}")))
    _check_configs(runs, results_dir, out)
    return selected, runs, key


def _check_out(out, table, scale, flag="--out"):
    marker = os.path.join(out, MARKER)
    if os.path.exists(marker):
        with open(marker) as f:
            held = json.load(f)
        if (held.get("table"), held.get("scale")) != (table, scale):
            raise ReproduceError(
                f"{flag} {out!r} holds table {held.get('table')} at scale {held.get('scale')}, "
                f"not table {table} at scale {scale}; choose another {flag}.")
    elif os.path.isdir(out) and set(os.listdir(out)) - {_lock_name()}:
        raise ReproduceError(f"{flag} {out!r} is not empty and was not made by launch.reproduce "
                             f"(no {MARKER}); choose another {flag}.")


def committed(results_dir, out, workdir):
    """The folder under ``results_dir`` that holds (or will hold) ``workdir``'s small files."""
    return os.path.join(results_dir, os.path.relpath(workdir, out))


def _check_configs(runs, results_dir=None, out=None):
    """Parse every run's config now (typos fail here) and refuse a workdir with another one."""
    import gin
    from birds_tf.utils.workdir import Workdir
    from . import common
    for row, seed, files, bindings, workdir in runs:
        gin.clear_config()
        try:
            text = common.parse_gin(files, bindings)
        except Exception as e:  # gin reports unknown names with its own exception types
            raise ReproduceError(f"Row {row.row} ({row.gin}): its config does not parse: {e}")
        finally:
            gin.clear_config()
        held = [(Workdir(workdir).config_gin, "--out")]
        if results_dir:
            held.append((Workdir(committed(results_dir, out, workdir)).config_gin,
                         "--results_dir"))
        for path, flag in held:
            if os.path.exists(path):
                with open(path) as f:
                    if f.read() != text:
                        raise ReproduceError(
                            f"{os.path.dirname(path)!r} already holds a run with another config "
                            f"(see {path}); the row's gin file changed since. Use another "
                            f"{flag}.")


def _lock_name():
    from birds_tf.utils import lock
    return lock.LOCK_NAME


def _write_marker(out, table, scale, rows, seeds):
    from birds_tf.utils.records import atomic_write_text
    path = os.path.join(out, MARKER)
    held = {}
    if os.path.exists(path):
        with open(path) as f:
            held = json.load(f)
    done_rows = list(dict.fromkeys(list(held.get("rows", [])) + [r.row for r in rows]))
    os.makedirs(out, exist_ok=True)
    atomic_write_text(path, json.dumps({"table": table, "scale": scale, "rows": done_rows,
                                        "seeds": max(int(held.get("seeds", 0)), seeds)},
                                       indent=1) + "\n")


def run_record(seconds, trained=True):
    """``run.json``: where and from which commit a run came, so RESULTS.md can name both."""
    import tensorflow as tf

    from birds_tf.utils import machine

    def git(*args):
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=30,
                                  check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
    cpu = platform.processor() or None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    # Code only: a committed results folder is data, and a reproduce run adding a row rewrites
    # its reproduce.json before training (which would flag every run of the new row).
    status = git("status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                 ":(top,exclude)results")
    return {"commit": git("rev-parse", "--short=7", "HEAD"),
            "uncommitted_changes": None if status is None else bool(status),
            "cpu": cpu, "cpu_flags": machine.cpu_flags(), "cpu_count": os.cpu_count(),
            "system": platform.system(),
            "tensorflow": tf.__version__, "python": platform.python_version(),
            "wall_seconds": seconds,
            # Float reductions, hence trajectories, depend on the thread count: a run is
            # reproduced bit for bit only with the same threads (RESULTS.md, "How to read it").
            "threads": {"TF_NUM_INTRAOP_THREADS": os.environ.get("TF_NUM_INTRAOP_THREADS"),
                        "TF_NUM_INTEROP_THREADS": os.environ.get("TF_NUM_INTEROP_THREADS"),
                        "intra_op_set": tf.config.threading.get_intra_op_parallelism_threads(),
                        "inter_op_set": tf.config.threading.get_inter_op_parallelism_threads()},
            # What TensorFlow read at import: unset leaves oneDNN off on AVX2-only CPUs
            # (birds_tf.utils.machine); birds-tf sets "1" unless the user chose.
            "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
            "recorded": "when trained" if trained else "when copied (trained earlier)",
            "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def copy_results(workdir, target):
    """The run's small files into ``target`` (written whole; the folder appears last)."""
    from birds_tf.utils.records import atomic_write_text
    from birds_tf.utils.workdir import RESULT_FILES, Workdir
    source_dir, target_dir = Workdir(workdir), Workdir(target)
    os.makedirs(target, exist_ok=True)
    for name in RESULT_FILES:
        source = source_dir.path(name)
        if os.path.exists(source) and name != Workdir.RESULTS_JSON:
            shutil.copyfile(source, target_dir.path(name + ".tmp"))
            os.replace(target_dir.path(name + ".tmp"), target_dir.path(name))
    # results.json last: its presence is what marks the committed run finished.
    with open(source_dir.results_json) as f:
        atomic_write_text(target_dir.results_json, f.read())


def _train(files, bindings, workdir, verbose=1):
    import gin
    import keras
    from . import train
    gin.clear_config()
    try:
        return train.run(files, bindings, workdir, verbose=verbose)
    finally:
        gin.clear_config()
        keras.backend.clear_session()


def write_hparams(out, table, scale, summary_runs):
    """One HParams trial per run: method, sparsity, seed, row -> RA, SA, RGG, FLOPs."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp
    metrics = [("ra_best", "RA best"), ("ra_final", "RA final"), ("sa_best", "SA best"),
               ("sa_final", "SA final"), ("rgg_final", "RGG"),
               ("training_flops", "training FLOPs"), ("inference_flops", "inference FLOPs")]
    root = os.path.join(out, "hparams")
    with tf.summary.create_file_writer(root).as_default():
        hp.hparams_config(
            hparams=[hp.HParam("row"), hp.HParam("method"), hp.HParam("sparsity"),
                     hp.HParam("seed"), hp.HParam("table"), hp.HParam("scale")],
            metrics=[hp.Metric(f"results/{k}", display_name=name) for k, name in metrics])
    for row, seed, results in summary_runs:
        with tf.summary.create_file_writer(
                os.path.join(root, row.row, f"seed{seed}")).as_default():
            hp.hparams({"row": row.row, "method": row.method, "sparsity": float(row.sparsity),
                        "seed": int(seed), "table": table, "scale": scale},
                       trial_id=f"{row.row}/seed{seed}")
            for key, _ in metrics:
                if results.get(key) is not None:
                    tf.summary.scalar(f"results/{key}", float(results[key]), step=0)
    return root


def run(table, seeds=1, scale="paper", out=None, rows=None, gin_bindings=(), verbose=1,
        results_dir=None):
    """What ``main`` does; returns (markdown, csv text, summary, out folder).

    ``verbose`` is ``train_eval``'s: 1 prints one line per epoch, 0 nothing, 2 Keras' too.
    ``results_dir``: where finished runs' small files are copied (and found: a run there counts
    as finished).
    """
    out = out or default_out(table, scale)
    selected, runs, key = plan(table, seeds, scale, out, rows, gin_bindings, results_dir)
    from birds_tf.training import preemption
    from birds_tf.utils import lock
    # one sweep per folder (a second is refused naming this process); SIGTERM stops cleanly
    with lock.acquire(out, "launch.reproduce sweep"), preemption.on_sigterm():
        return _run_planned(out, selected, runs, key, table, seeds, scale, verbose, results_dir)


def _run_planned(out, selected, runs, key, table, seeds, scale, verbose, results_dir):
    from birds_tf.utils.workdir import Workdir
    _write_marker(out, key, scale, selected, seeds)
    if results_dir:
        _write_marker(results_dir, key, scale, selected, seeds)
    results, finished = {}, []
    start = time.time()
    for i, (row, seed, gin_files, bindings, workdir) in enumerate(runs, 1):
        files = Workdir(workdir)
        path = files.results_json
        kept = committed(results_dir, out, workdir) if results_dir else None
        state = "reused" if os.path.exists(path) else (
            "resumed" if os.path.exists(files.config_gin) else "training")
        if kept and os.path.exists(Workdir(kept).results_json):
            state, path = "committed", Workdir(kept).results_json
        print(f"[{i}/{len(runs)}] table {key} row {row.row} seed {seed}: {state} -> "
              f"{kept if state == 'committed' else workdir}", flush=True)
        t0 = time.time()
        if state in ("reused", "committed"):
            with open(path) as f:
                res = json.load(f)
        else:
            res = _train(gin_files, bindings, workdir, verbose)
            files.write_run(run_record(time.time() - t0))
        if kept and state != "committed":
            if not os.path.exists(files.run_json):
                files.write_run(run_record(res.get("seconds"), trained=False))
            copy_results(workdir, kept)
        res = dict(res, seed=seed)
        print(f"[{i}/{len(runs)}] {row.row} seed {seed}: RA best {res['ra_best']:.2f} final "
              f"{res['ra_final']:.2f}, SA final {res['sa_final']:.2f}, RGG "
              f"{res['rgg_final']:.2f} ({time.time() - t0:.0f} s; {time.time() - start:.0f} s "
              "in all)", flush=True)
        results.setdefault(row.row, []).append(res)
        finished.append((row, seed, res))
    from birds_tf.metrics import reproduction
    from birds_tf.utils.records import atomic_write_text
    summary = reproduction.summarize(selected, results)
    title = reproduction.title(key, scale, seeds)
    trained = None
    if scale != "paper":
        config = Workdir(runs[0][4]).config_json
        if results_dir:
            config = Workdir(committed(results_dir, out, runs[0][4])).config_json
        if os.path.exists(config):
            with open(config) as f:
                trained = reproduction.describe_config(json.load(f))
    md = reproduction.markdown(summary, title, trained)
    text = reproduction.csv_text(summary)
    atomic_write_text(os.path.join(out, "table.md"), md + "\n")
    atomic_write_text(os.path.join(out, "table.csv"), text)
    if results_dir:
        atomic_write_text(os.path.join(results_dir, "table.csv"), text)
    write_hparams(out, key, scale, finished)
    return md, text, summary, out


def main(argv=None):
    cli.parse(FLAGS, argv, "launch.reproduce", __doc__)
    if not FLAGS.table:
        raise SystemExit("launch.reproduce: --table is required (1, 2, 3, A6, A10, A11, A12 or "
                         "A17).")
    from . import quiet
    quiet.start_tensorflow(FLAGS.verbosity)
    try:
        md, _, _, out = run(FLAGS.table, FLAGS.seeds, FLAGS.scale, FLAGS.out, FLAGS.rows,
                            FLAGS.extra_gin_bindings, verbose=cli.train_verbose(FLAGS.verbosity),
                            results_dir=FLAGS.results_dir)
    except ReproduceError as e:
        raise SystemExit(f"launch.reproduce: {e}") from None
    except Exception as e:  # noqa: BLE001  preempted, folder in use, disk full: own exit codes
        from . import common
        code = common.fault_exit("launch.reproduce", e)
        if code is None:
            raise
        return code
    print()
    print(md)
    print(f"\nWrote {os.path.join(out, 'table.md')}, table.csv and the HParams summary "
          f"({os.path.join(out, 'hparams')}; tensorboard --logdir {out}).")
    return 0


def entry():
    """The ``birds-tf-reproduce`` console script: ``main`` with bad input as one line."""
    return cli.run(main, FLAGS, "launch.reproduce")


if __name__ == "__main__":
    sys.exit(entry())
