r"""Try one candidate offline setting on the dense row: N seeds, validation numbers only.

  python -m launch.setting_search --candidate=gin/offline/search/c5_256img_40ep.gin --seeds=3

Trains dense PGD-AT (``gin/table1/dense_resnet18.gin`` + the candidate, which layers
``gin/offline/offline.gin``) for seeds 1..N into ``<out>/seed<k>/`` (default
``runs/setting_search/<candidate>``; rerunning resumes), then prints, per seed and as mean ±
sample std, the two signs of robust overfitting on the **validation** split
(``birds_tf.metrics.overfitting``): the fall of validation RA after its peak (raw and smoothed)
and the gap between the final model's train RA and its validation RA. It says whether the means
meet the choice rule (gap >= 15 and smoothed fall >= 3 points). Test numbers are never printed:
the setting is chosen before anyone looks at them (RESULTS.md "Choosing the setting").
"""
import os
import sys
import time

from absl import flags

from . import cli

DENSE_GIN = "gin/table1/dense_resnet18.gin"
FLAGS = cli.new_flags()
flags.DEFINE_string("candidate", None, "The candidate's gin file (gin/offline/search/*.gin).",
                    flag_values=FLAGS)
flags.DEFINE_integer("seeds", 3, "Seeds (train_eval.seed = 1..N).", flag_values=FLAGS)
flags.DEFINE_string("out", None, "Output folder (default runs/setting_search/<candidate>).",
                    flag_values=FLAGS)
flags.DEFINE_string("results_dir", "results/setting_search", "Where the candidate's record "
                    "(choice.json: validation numbers and curves, each seed's config.gin) is "
                    "kept, to commit; '' keeps none.", flag_values=FLAGS)
flags.DEFINE_multi_string("extra_gin_bindings", [], "Gin bindings after the candidate (tests).",
                          flag_values=FLAGS)


class SearchError(ValueError):
    """Bad input to launch.setting_search, found before any training."""


def plan(candidate, seeds, out=None, gin_bindings=()):
    """[(gin files, bindings, workdir)] after checking everything; raises SearchError."""
    from birds_tf.experiment.configs import find_config  # as given, then birds-tf's configs
    if not candidate or find_config(candidate) is None:
        raise SearchError(f"--candidate {candidate!r} is not a gin file; the candidates are in "
                          "gin/offline/search/.")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise SearchError(f"--seeds must be an integer >= 1, got {seeds!r}.")
    out = out or os.path.join("runs", "setting_search",
                              os.path.splitext(os.path.basename(candidate))[0])
    import gin
    from birds_tf.utils.workdir import Workdir
    from . import common
    runs = []
    for k in range(1, seeds + 1):
        bindings = list(gin_bindings) + [f"train_eval.seed = {k}"]
        workdir = os.path.join(out, f"seed{k}")
        gin.clear_config()
        try:
            text = common.parse_gin([DENSE_GIN, candidate], bindings)
        except Exception as e:  # gin reports unknown names with its own exception types
            raise SearchError(f"{candidate}: the config does not parse: {e}") from None
        finally:
            gin.clear_config()
        held = Workdir(workdir).config_gin
        if os.path.exists(held):
            with open(held) as f:
                if f.read() != text:
                    raise SearchError(f"{workdir!r} holds a run with another config (see "
                                      f"{held}); the candidate changed since. Use another --out.")
        runs.append(([DENSE_GIN, candidate], bindings, workdir))
    return runs


def _mean_std(values):
    from birds_tf.metrics.reproduction import mean_std
    return mean_std(values)


def summarize(per_seed):
    """{key: (mean, sample std)} over seeds of ``overfitting.validation_signs`` dicts."""
    keys = ("train_ra", "val_ra_best", "val_ra_final", "drop", "drop_smoothed", "rgg_val")
    return {k: _mean_std([s[k] for s in per_seed]) for k in keys}


def table(per_seed, summary, seconds):
    """The Markdown the command prints (validation only)."""
    from birds_tf.metrics import overfitting
    head = ["seed", "train RA (final)", "val RA best", "val RA final", "fall", "fall smoothed",
            "gap (train - val)", "wall s (this call)"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def f(v):
        return "-" if v is None else f"{v:.2f}"
    for k, (s, sec) in enumerate(zip(per_seed, seconds), 1):
        out.append("| " + " | ".join([str(k), f(s["train_ra"]), f(s["val_ra_best"]),
                                      f(s["val_ra_final"]), f(s["drop"]),
                                      f(s["drop_smoothed"]), f(s["rgg_val"]),
                                      f"{sec:.0f}"]) + " |")
    cells = [f(m) + ("" if sd is None else f" ± {sd:.2f}") for m, sd in
             (summary[k] for k in ("train_ra", "val_ra_best", "val_ra_final", "drop",
                                   "drop_smoothed", "rgg_val"))]
    out.append("| " + " | ".join([f"mean (n={len(per_seed)})"] + cells + [""]) + " |")
    rgg, drop = summary["rgg_val"][0], summary["drop_smoothed"][0]
    ok = rgg is not None and overfitting.meets(rgg, drop)
    out += ["", f"Both signs on validation (gap >= {overfitting.MIN_RGG:g}, smoothed fall >= "
            f"{overfitting.MIN_DROP:g}, means over seeds): {'yes' if ok else 'no'}."]
    return "\n".join(out), ok


# What choice.json keeps of a seed's config.json: the knobs the candidates vary.
SETTING_KEYS = ("dataset", "max_train", "augment", "arch_kwargs", "epochs", "lr", "milestones",
                "batch_size", "train_eps", "train_steps", "eval_eps", "eval_steps", "max_eval",
                "final_test_steps")


def record(candidate, workdirs, per_seed, seconds, summary, met):
    """choice.json's content: validation numbers only (curves included, so the falls can be
    recomputed by hand), never a test number: the setting is chosen before any is read."""
    from birds_tf.utils.workdir import Workdir
    seeds = []
    for workdir, signs, sec in zip(workdirs, per_seed, seconds):
        history = Workdir(workdir).read_metrics()
        # the run's own time; a reused seed's call is short
        trained = Workdir(workdir).read_results().get("seconds")
        seeds.append(dict(signs, wall_seconds=trained if trained is not None else sec,
                          val_ra_curve=[float(r["val_ra"]) for r in history],
                          val_robust_loss_curve=[float(r["val_robust_loss"]) for r in history],
                          train_ra_curve=[float(r["train_ra"]) for r in history]))
    config = Workdir(workdirs[0]).read_config()
    return {"candidate": candidate, "setting": {k: config.get(k) for k in SETTING_KEYS},
            "seeds": seeds, "summary": {k: list(v) for k, v in summary.items()}, "met": met}


def keep(results_dir, candidate, workdirs, choice):
    """``<results_dir>/<candidate>/``: choice.json and each seed's config.gin (kilobytes)."""
    import shutil
    from birds_tf.utils import records
    from birds_tf.utils.workdir import Workdir
    target = os.path.join(results_dir, os.path.splitext(os.path.basename(candidate))[0])
    for k, workdir in enumerate(workdirs, 1):
        seed_dir = Workdir(os.path.join(target, f"seed{k}"))
        os.makedirs(seed_dir.root, exist_ok=True)
        shutil.copyfile(Workdir(workdir).config_gin, seed_dir.config_gin)
    records.write_json(os.path.join(target, "choice.json"), choice)
    return target


def run(candidate, seeds=3, out=None, gin_bindings=(), verbose=1, results_dir=None):
    """Train (or resume, or reuse) the seeds; returns (markdown, summary, met).

    ``results_dir``: keep the candidate's record there (``keep``) to commit."""
    runs = plan(candidate, seeds, out, gin_bindings)
    from birds_tf.metrics import overfitting
    from birds_tf.utils import records
    from birds_tf.utils.workdir import Workdir
    from . import reproduce
    per_seed, seconds = [], []
    for i, (files, bindings, workdir) in enumerate(runs, 1):
        print(f"[{i}/{len(runs)}] dense seed {i} -> {workdir}", flush=True)
        t0 = time.time()
        res = reproduce._train(files, bindings, workdir, verbose)
        seconds.append(time.time() - t0)
        history = Workdir(workdir).read_metrics()
        per_seed.append(overfitting.validation_signs(history, res))
    summary = summarize(per_seed)
    md, ok = table(per_seed, summary, seconds)
    folder = os.path.dirname(runs[0][2])
    records.atomic_write_text(os.path.join(folder, "choice.md"), md + "\n")
    choice = record(candidate, [r[2] for r in runs], per_seed, seconds, summary, ok)
    records.write_json(os.path.join(folder, "choice.json"), choice)
    if results_dir:
        keep(results_dir, candidate, [r[2] for r in runs], choice)
    return md, summary, ok


def main(argv=None):
    cli.parse(FLAGS, argv, "launch.setting_search", __doc__)
    if not FLAGS.candidate:
        raise SystemExit("launch.setting_search: --candidate is required (a gin file of "
                         "gin/offline/search/).")
    from . import quiet
    quiet.start_tensorflow(FLAGS.verbosity)
    try:
        md, _, _ = run(FLAGS.candidate, FLAGS.seeds, FLAGS.out, FLAGS.extra_gin_bindings,
                       verbose=cli.train_verbose(FLAGS.verbosity),
                       results_dir=FLAGS.results_dir or None)
    except SearchError as e:
        raise SystemExit(f"launch.setting_search: {e}") from None
    print()
    print(f"Candidate {FLAGS.candidate}, dense, validation split only:")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
