"""Flying Bird+ in birds-tf against the authors' code: the agreement statistics of issue 23.

  python -m benchmarks.official_agreement --tf=OUT_TF --torch=OUT_TORCH --label=random
      [--seeds 6] [--method fbp|dense] [--torch_log_dir DIR] [--save results/side_by_side/random]

Reads the runs that ``../shared/official_side_by_side/run.sh`` writes (``OUT/tf/fbp_s<k>/`` and
``OUT/torch/fbp_s<k>/``, each with ``results.json``; birds-tf's ``metrics.csv`` for per-layer
densities, the authors' log for theirs) and prints, per side, mean +- sample std over seeds, then
for each figure the difference birds-tf - authors' code with a Welch 95% interval (the two
sides are independent runs: no pairing by seed holds across frameworks) and the verdicts:

* RA final and RA best: |mean difference| <= 2.5 points and the 95% interval contains 0;
* final sparsity: |mean difference| <= 1 point;
* prune-more and grow-more epochs (epochs where FB+ adapted its ratios): mean counts within 3;
* the small layers (stem ``conv1`` and the 1x1 shortcuts): final density per seed, printed side
  by side, for a reader to judge (no automatic verdict: the story is in the per-seed values).

``--save`` writes the per-seed figures it read as small JSON files (no checkpoints), so the
table in docs and the README is backed by committed data; ``--from_saved`` re-prints from them.
Exit status 0 when every verdict holds, 1 otherwise; a bad input (a missing folder, a bad value)
is refused on one line before anything is read, also with status 1 (``--verbosity=0``: the
traceback).
"""
import csv
import json
import math
import os
import re
import statistics
import sys

from absl import flags

from benchmarks import flag_args
from birds_tf.metrics.paired import t_quantile, t_two_sided_p
from birds_tf.utils.workdir import Workdir
from launch import cli

SMALL = ("conv1", "layer2_0_shortcut", "layer3_0_shortcut", "layer4_0_shortcut")
FIGURES = (("ra_final", "RA final", 2.5), ("ra_best", "RA best", 2.5),
           ("sa_final", "SA final", None), ("sparsity", "final sparsity %", 1.0),
           ("prune_more", "prune-more epochs", 3.0), ("grow_more", "grow-more epochs", 3.0),
           ("rgg_final", "RGG (train RA final - test RA final)", None),
           ("train_ra_final", "train RA final (PGD-20, whole train split, eval mode)", None),
           ("train_ra_running_final", "running train RA, last epoch (PGD-10, train mode)", None))
DENSE_FIGURES = tuple(f for f in FIGURES if f[0] not in ("sparsity", "prune_more", "grow_more"))


def welch(a, b, confidence=0.95):
    """Mean of ``a`` minus mean of ``b`` with Welch's interval and two-sided p.

    Args:
      a, b: samples (at least 2 values each).
      confidence: of the two-sided interval.
    Returns:
      ``{"diff", "low", "high", "p", "df"}``; zero spread on both sides gives the degenerate
      interval [diff, diff].
    """
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"Welch's interval needs 2 values a side, got {len(a)} and {len(b)}.")
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    diff, se = ma - mb, math.sqrt(va + vb)
    if se == 0.0:
        return {"diff": diff, "low": diff, "high": diff, "p": 1.0 if diff == 0 else 0.0,
                "df": float("inf")}
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = t_quantile(0.5 + confidence / 2.0, df) * se
    return {"diff": diff, "low": diff - half, "high": diff + half,
            "p": t_two_sided_p(diff / se, df), "df": df}


def _tf_layers(workdir):
    """birds-tf's final density of the small layers, from the last row of ``metrics.csv``."""
    path = Workdir(workdir).metrics_csv
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        rows = list(csv.DictReader(f))
    last = rows[-1]
    return {name: float(last[f"density/{name}"]) for name in SMALL if f"density/{name}" in last}


_LOG_LINE = re.compile(r"^(?P<name>[\w.]+)\.weight_\d+: [\d.]+->(?P<nnz>\d+), density: "
                       r"(?P<density>[\d.]+)")


def _torch_layers(log):
    """The authors' code's last printed density of the small layers (it prints every layer
    at every mask update: ``layer2.0.shortcut.0.weight_19: 125.0->125, density: 0.977``)."""
    if not log or not os.path.exists(log):
        return {}
    last = {}
    with open(log) as f:
        for line in f:
            m = _LOG_LINE.match(line.strip())
            if m:
                name = m.group("name").replace(".0.", "_0_").replace(".", "_")
                name = re.sub(r"_shortcut_0$", "_shortcut", name)
                last[name] = float(m.group("density"))
    return {name: last[name] for name in SMALL if name in last}


def read_run(workdir, side, log=None):
    """The per-seed figures of one run folder (None when it has no ``results.json``)."""
    path = Workdir(workdir).results_json
    if not os.path.exists(path):
        return None
    with open(path) as f:
        r = json.load(f)
    if side == "tf":
        events = r.get("mask_update_events", [])
        prune = sorted({e["epoch"] for e in events if e.get("prune_more")})
        grow = sorted({e["epoch"] for e in events if e.get("grow_more")})
        layers = _tf_layers(workdir)
    else:
        prune, grow = r.get("prune_more_epochs", []), r.get("grow_more_epochs", [])
        layers = _torch_layers(log)
    return {"ra_final": r["ra_final"], "ra_best": r["ra_best"], "sa_final": r["sa_final"],
            "sparsity": 100.0 * r["final_sparsity"], "prune_more": len(prune),
            "grow_more": len(grow), "rgg_final": r.get("rgg_final"),
            "train_ra_final": r.get("train_ra_final"),
            "train_ra_running_final": r.get("train_ra_running_final"),
            "mask_updates": r.get("mask_updates"), "small_layers": layers}


def collect(tf_out, torch_out, seeds, torch_log_dir=None, method="fbp"):
    """``{"tf": {seed: figures}, "torch": {...}}``; ``tf_out`` / ``torch_out`` may each be a
    list of run.sh OUT folders (a later seed range run into another folder)."""
    runs = {"tf": {}, "torch": {}}
    tf_outs = [tf_out] if isinstance(tf_out, str) else list(tf_out)
    torch_outs = [torch_out] if isinstance(torch_out, str) else list(torch_out)
    for seed in seeds:
        for out in tf_outs:
            run = read_run(os.path.join(out, "tf", f"{method}_s{seed}"), "tf")
            if run is not None:
                runs["tf"][seed] = run
        runs["tf"].setdefault(seed, None)
        for out in torch_outs:
            log = os.path.join(torch_log_dir or os.path.join(out, "logs"),
                               f"torch_{method}_s{seed}.log")
            run = read_run(os.path.join(out, "torch", f"{method}_s{seed}"), "torch", log)
            if run is not None:
                runs["torch"][seed] = run
        runs["torch"].setdefault(seed, None)
    return runs


def report(runs, label, method="fbp"):
    """The table (markdown) and whether every verdict holds."""
    tf = [r for r in runs["tf"].values() if r]
    to = [r for r in runs["torch"].values() if r]
    name = "FB+" if method == "fbp" else "Dense PGD-AT"
    lines = [f"{name} side by side, {label}: birds-tf n={len(tf)}, authors' code n={len(to)}",
             "", "| figure | birds-tf | authors' code | difference (Welch 95% CI) | verdict |",
             "|---|---|---|---|---|"]
    ok = True
    for key, name, bound in (FIGURES if method == "fbp" else DENSE_FIGURES):
        a = [r[key] for r in tf if r.get(key) is not None]
        b = [r[key] for r in to if r.get(key) is not None]
        if len(a) < 2 or len(b) < 2:
            lines.append(f"| {name} | n={len(a)} | n={len(b)} | n/a | missing |")
            ok &= bound is None  # a missing information row decides nothing
            continue
        w = welch(a, b)
        cell = lambda v: f"{statistics.fmean(v):.2f} +- {statistics.stdev(v):.2f}"  # noqa: E731
        if bound is None:
            verdict = "information"
        elif key in ("ra_final", "ra_best"):
            good = abs(w["diff"]) <= bound and w["low"] <= 0.0 <= w["high"]
            verdict = ("agree" if good else "DISAGREE") + f" (|diff| <= {bound}, CI holds 0)"
            ok &= good
        else:
            good = abs(w["diff"]) <= bound
            verdict = ("agree" if good else "DISAGREE") + f" (|diff| <= {bound:g})"
            ok &= good
        lines.append(f"| {name} | {cell(a)} | {cell(b)} | {w['diff']:+.2f} "
                     f"[{w['low']:+.2f}, {w['high']:+.2f}], p {w['p']:.2f} | {verdict} |")
    if method != "fbp":
        lines += ["", "Verdict: " + ("AGREE" if ok else "DISAGREE")]
        return "\n".join(lines), ok
    lines += ["", "Final density of the small layers per seed (birds-tf / authors' code; "
              "stem = conv1, 72 weights):", "",
              "| seed | " + " | ".join(SMALL) + " |", "|---" * (len(SMALL) + 1) + "|"]
    for seed in sorted(runs["tf"]):
        a, b = runs["tf"][seed], runs["torch"][seed]
        cells = []
        for name in SMALL:
            x = a["small_layers"].get(name) if a else None
            y = b["small_layers"].get(name) if b else None
            cells.append(" / ".join("-" if v is None else f"{v:.3f}" for v in (x, y)))
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    per_seed = ["", "Per seed, RA final (birds-tf / authors' code): " + ", ".join(
        f"{s}: " + " / ".join("-" if runs[side][s] is None else
                              f"{runs[side][s]['ra_final']:.2f}" for side in ("tf", "torch"))
        for s in sorted(runs["tf"]))]
    lines += per_seed
    lines += ["", "Verdict: " + ("AGREE" if ok else "DISAGREE")]
    return "\n".join(lines), ok


PROG = "benchmarks.official_agreement"
FLAGS = cli.new_flags()
flags.DEFINE_multi_string("tf", None, "run.sh's OUT holding tf/<method>_s<k>/ (repeat for "
                          "several folders).", flag_values=FLAGS)
flags.DEFINE_multi_string("torch", None, "run.sh's OUT holding torch/<method>_s<k>/ and logs/ "
                          "(repeat for several folders).", flag_values=FLAGS)
flags.DEFINE_enum("method", "fbp", ("fbp", "dense"), "Which runs to compare.", flag_values=FLAGS)
flags.DEFINE_string("torch_log_dir", None, "Folder of the authors' logs (default: OUT/logs).",
                    flag_values=FLAGS)
flags.DEFINE_string("label", "random", "The table's label.", flag_values=FLAGS)
flags.DEFINE_integer("seeds", 6, "Seeds 1..N are read.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_string("save", None, "Folder for the per-seed figures (JSON) and the table.",
                    flag_values=FLAGS)
flags.DEFINE_string("from_saved", None, "Re-print from a --save folder.", flag_values=FLAGS)


def check(a):
    """Refuse a missing folder before anything is read (a ``FileNotFoundError`` or
    ``NotADirectoryError`` naming it)."""
    if a.from_saved:
        path = os.path.join(a.from_saved, "runs.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--from_saved={a.from_saved}: no {path}; pass a folder "
                                    "that --save wrote (e.g. results/side_by_side/dense).")
    elif not (a.tf and a.torch):
        raise ValueError("pass --tf and --torch (run.sh's OUT folders) or --from_saved.")
    else:
        for name, folders in (("tf", a.tf), ("torch", a.torch),
                              ("torch_log_dir", [a.torch_log_dir] if a.torch_log_dir else [])):
            for folder in folders:
                if not os.path.isdir(folder):
                    raise FileNotFoundError(f"--{name}={folder}: no such folder; pass "
                                            "run.sh's OUT folder.")
    if a.save and os.path.exists(a.save) and not os.path.isdir(a.save):
        raise NotADirectoryError(f"--save={a.save} is a file; pass a folder (new or "
                                 "existing).")


def main(argv=None):
    """Print the table; returns 0 when every verdict holds, 1 otherwise.

    Args:
      argv: the flags, without the program name (default ``sys.argv[1:]``).
    """
    cli.parse(FLAGS, argv, PROG, __doc__)
    a = flag_args.args(FLAGS)
    check(a)
    if a.from_saved:
        path = os.path.join(a.from_saved, "runs.json")
        with open(path) as f:
            saved = json.load(f)
        runs = {side: {int(s): v for s, v in saved["runs"][side].items()} for side in saved["runs"]}
        label, a.method = saved["label"], saved.get("method", "fbp")
    else:
        runs = collect(a.tf, a.torch, range(1, a.seeds + 1), a.torch_log_dir, a.method)
        label = a.label
    text, ok = report(runs, label, a.method)
    print(text)
    if a.save:
        os.makedirs(a.save, exist_ok=True)
        with open(os.path.join(a.save, "runs.json"), "w") as f:
            json.dump({"label": label, "method": a.method, "runs": runs}, f, indent=1,
                      sort_keys=True)
        with open(os.path.join(a.save, "table.md"), "w") as f:
            f.write(text + "\n")
    return 0 if ok else 1


def entry(argv=None):
    """``python -m benchmarks.official_agreement``: ``main`` with a bad input as one line."""
    return flag_args.entry(main, FLAGS, PROG, argv)


if __name__ == "__main__":
    sys.exit(entry())
