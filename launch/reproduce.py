r"""Reproduce a table of the paper: every row's config x seeds, then mean +- std next to the paper.

  python -m launch.reproduce --table=1 --scale=offline --seeds=3 --rows=dense,rb,fb,fb_plus
  python -m launch.reproduce --table=2 --scale=paper --seeds=3 --out=runs/table2   # a GPU job
  python -m launch.reproduce --table=1 --scale=smoke --seeds=2 --rows=dense,fb_plus  # a test size

Each run trains into ``<out>/<row>/seed<k>/`` with ``launch.train``'s run function and
``train_eval.seed = k``; rerunning the command resumes an interrupted run from its last epoch and
reuses finished ones, so a sweep can be stopped and continued at any time. The paper's numbers come
from ``birds_tf/metrics/paper_tables.csv``; the table goes to stdout, ``<out>/table.md`` and
``<out>/table.csv``, and a TensorBoard HParams summary to ``<out>/hparams``.

Scales: ``paper`` runs the gin files as they are (CIFAR / Tiny-ImageNet, 200 epochs);
``offline`` layers ``gin/offline.gin`` (animal silhouettes, a CPU schedule; its header documents
the mapping) and narrows WideResNet-34-10 to base width 2 (1/8, like the others' 8 of 64);
``smoke`` layers ``gin/smoke.gin`` (digits, two tiny epochs).
"""
import json
import os
import sys
import time

from absl import flags

from launch import cli

SCALES = ("paper", "offline", "smoke")
SCALE_GIN = {"paper": [], "offline": ["gin/offline.gin"], "smoke": ["gin/smoke.gin"]}
# Offline scale: every architecture at 1/8 of its paper width (offline.gin binds 8 of 64).
OFFLINE_ARCH_BINDINGS = {"wide_resnet34_10": ["train_eval.arch_kwargs = {'width': 2}"]}
MARKER = "reproduce.json"

FLAGS = cli.new_flags()
flags.DEFINE_string("table", None, "Paper table: 1, 2, 3, A6, A10, A11, A12 or A17 (required).",
                    flag_values=FLAGS)
flags.DEFINE_integer("seeds", 1, "Seeds per row (train_eval.seed = 1..N).", flag_values=FLAGS)
flags.DEFINE_enum("scale", "paper", SCALES, "paper: the gin files as they are; offline: animal "
                  "silhouettes on a CPU schedule (gin/offline.gin); smoke: test size.",
                  flag_values=FLAGS)
flags.DEFINE_string("out", None, "Output folder (default runs/reproduce/table<T>_<scale>).",
                    flag_values=FLAGS)
flags.DEFINE_list("rows", None, "Only these rows of the table (ids as in "
                  "birds_tf/metrics/paper_tables.csv, e.g. dense,rb,fb,fb_plus).",
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


def plan(table, seeds, scale, out, rows=None, gin_bindings=()):
    """Check everything and list the runs; raises ReproduceError before any training.

    Returns (paper rows selected, [(row, seed, gin files, bindings, workdir)], table key).
    """
    from birds_tf.metrics import paper
    try:
        all_rows = paper.table(table)
    except ValueError as e:
        raise ReproduceError(str(e)) from None
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
    missing = [r for r in selected if not os.path.exists(r.gin)]
    if missing:
        have = [r.row for r in selected if os.path.exists(r.gin)]
        raise ReproduceError(
            f"Table {key} needs configs that do not exist: "
            f"{', '.join(f'{r.gin} (row {r.row})' for r in missing)}. Write them, or pass "
            f"--rows with rows that have one" + (f" (e.g. --rows={','.join(have)})." if have
                                                 else "."))
    for path in SCALE_GIN[scale]:
        if not os.path.exists(path):
            raise ReproduceError(f"Scale {scale!r} needs {path}; run from the repository root.")
    _check_out(out, key, scale)
    runs = []
    for r in selected:
        extra = OFFLINE_ARCH_BINDINGS.get(r.arch, []) if scale == "offline" else []
        for k in range(1, seeds + 1):
            runs.append((r, k, [r.gin] + SCALE_GIN[scale],
                         extra + list(gin_bindings) + [f"train_eval.seed = {k}"],
                         os.path.join(out, r.row, f"seed{k}")))
    _check_configs(runs)
    return selected, runs, key


def _check_out(out, table, scale):
    marker = os.path.join(out, MARKER)
    if os.path.exists(marker):
        with open(marker) as f:
            held = json.load(f)
        if (held.get("table"), held.get("scale")) != (table, scale):
            raise ReproduceError(
                f"--out {out!r} holds table {held.get('table')} at scale {held.get('scale')}, "
                f"not table {table} at scale {scale}; choose another --out.")
    elif os.path.isdir(out) and set(os.listdir(out)) - {_lock_name()}:
        raise ReproduceError(f"--out {out!r} is not empty and was not made by launch.reproduce "
                             f"(no {MARKER}); choose another --out.")


def _check_configs(runs):
    """Parse every run's config now (typos fail here) and refuse a workdir with another one."""
    import gin
    from launch import common
    for row, seed, files, bindings, workdir in runs:
        gin.clear_config()
        try:
            text = common.parse_gin(files, bindings)
        except Exception as e:  # gin reports unknown names with its own exception types
            raise ReproduceError(f"Row {row.row} ({row.gin}): its config does not parse: {e}")
        finally:
            gin.clear_config()
        held = os.path.join(workdir, "config.gin")
        if os.path.exists(held):
            with open(held) as f:
                if f.read() != text:
                    raise ReproduceError(
                        f"{workdir!r} already holds a run with another config (see {held}); the "
                        "row's gin file changed since. Use another --out.")


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


def _train(files, bindings, workdir, verbose=1):
    import gin
    import keras
    from launch import train
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


def run(table, seeds=1, scale="paper", out=None, rows=None, gin_bindings=(), verbose=1):
    """What ``main`` does; returns (markdown, csv text, summary, out folder).

    ``verbose`` is ``train_eval``'s: 1 prints one line per epoch, 0 nothing, 2 Keras' too.
    """
    out = out or default_out(table, scale)
    selected, runs, key = plan(table, seeds, scale, out, rows, gin_bindings)
    from birds_tf.training import preemption
    from birds_tf.utils import lock
    # one sweep per folder (a second is refused naming this process); SIGTERM stops cleanly
    with lock.acquire(out, "launch.reproduce sweep"), preemption.on_sigterm():
        return _run_planned(out, selected, runs, key, table, seeds, scale, verbose)


def _run_planned(out, selected, runs, key, table, seeds, scale, verbose):
    _write_marker(out, key, scale, selected, seeds)
    results, finished = {}, []
    start = time.time()
    for i, (row, seed, files, bindings, workdir) in enumerate(runs, 1):
        path = os.path.join(workdir, "results.json")
        state = "reused" if os.path.exists(path) else (
            "resumed" if os.path.exists(os.path.join(workdir, "config.gin")) else "training")
        print(f"[{i}/{len(runs)}] table {key} row {row.row} seed {seed}: {state} -> {workdir}",
              flush=True)
        t0 = time.time()
        if state == "reused":
            with open(path) as f:
                res = json.load(f)
        else:
            res = _train(files, bindings, workdir, verbose)
        print(f"[{i}/{len(runs)}] {row.row} seed {seed}: RA best {res['ra_best']:.2f} final "
              f"{res['ra_final']:.2f}, SA final {res['sa_final']:.2f}, RGG "
              f"{res['rgg_final']:.2f} ({time.time() - t0:.0f} s; {time.time() - start:.0f} s "
              "in all)", flush=True)
        results.setdefault(row.row, []).append(res)
        finished.append((row, seed, res))
    from birds_tf.metrics import reproduction
    from birds_tf.utils.records import atomic_write_text
    summary = reproduction.summarize(selected, results)
    title = (f"Table {key}, scale {scale}, {seeds} seed(s) per row: ours = mean ± sample std "
             "over seeds; difference = ours - paper" +
             ("" if scale == "paper" else f" (scale {scale} trains on other data with another "
              "schedule: the difference says how far apart, not an error)") + ".")
    md = reproduction.markdown(summary, title)
    text = reproduction.csv_text(summary)
    atomic_write_text(os.path.join(out, "table.md"), md + "\n")
    atomic_write_text(os.path.join(out, "table.csv"), text)
    write_hparams(out, key, scale, finished)
    return md, text, summary, out


def main(argv=None):
    cli.parse(FLAGS, argv, "launch.reproduce", __doc__)
    if not FLAGS.table:
        raise SystemExit("launch.reproduce: --table is required (1, 2, 3, A6, A10, A11, A12 or "
                         "A17).")
    from launch import quiet
    quiet.start_tensorflow(FLAGS.verbosity)
    try:
        md, _, _, out = run(FLAGS.table, FLAGS.seeds, FLAGS.scale, FLAGS.out, FLAGS.rows,
                            FLAGS.extra_gin_bindings, verbose=cli.train_verbose(FLAGS.verbosity))
    except ReproduceError as e:
        raise SystemExit(f"launch.reproduce: {e}") from None
    except Exception as e:  # noqa: BLE001  preempted, folder in use, disk full: own exit codes
        from launch import common
        code = common.fault_exit("launch.reproduce", e)
        if code is None:
            raise
        return code
    print()
    print(md)
    print(f"\nWrote {os.path.join(out, 'table.md')}, table.csv and the HParams summary "
          f"({os.path.join(out, 'hparams')}; tensorboard --logdir {out}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
