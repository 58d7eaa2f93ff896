"""A paper table reproduced over seeds: mean +- std per row next to the paper's number and the
difference, as Markdown and CSV, and each row's paired difference to the dense row.

Why its own module: `table.py` lays out single runs; a reproduction needs the seed spread (a
number without it is an anecdote) and the published value beside it. RGG reductions are taken
against the dense row of the same group (dataset / architecture) of the same table:
mean(RGG dense) - mean(RGG row), printed without a spread: seeds are paired across rows (same
data order and attack seeds; same initial weights where the architecture is), so the
uncertainty of a difference is the paired one (`birds_tf.metrics.paired`), given for RA best, RA final and RGG in a second table. FLOPs are
also shown as a percentage of that dense row, the only form in which ours and the paper's compare
(the paper's inference column has an unexplained scale, docs/flops.md, "The paper's inference
column"; other scales train on other data). Each row's measured wall time (results.json's
``seconds``) stands beside its FLOPs, also as a percentage of the dense row, so a FLOPs saving
can be read against the time it bought.
"""
import csv
import io
import math

import numpy as np

from birds_tf.metrics import paired

# Our key in results.json for each metric of the paper's tables.
RESULT_KEYS = {"ra_best": "ra_best", "ra_final": "ra_final", "ra_diff": "ra_diff",
               "sa_best": "sa_best", "sa_final": "sa_final", "sa_diff": "sa_diff",
               "training_flops": "training_flops", "inference_flops": "inference_flops",
               "rgg": "rgg_final", "seconds": "seconds"}
ACCURACY = ("ra_best", "ra_final", "ra_diff", "sa_best", "sa_final", "sa_diff")
FLOPS = ("training_flops", "inference_flops")
CSV_METRICS = ACCURACY + FLOPS + ("training_flops_pct", "inference_flops_pct", "rgg",
                                  "rgg_reduction", "seconds", "seconds_pct")
# Paired against the dense row, per seed: row - dense.
PAIRED = ("ra_best", "ra_final", "rgg")
PAIRED_NAMES = {"ra_best": "RA best", "ra_final": "RA final", "rgg": "RGG"}
PAIRED_PARTS = ("n", "mean", "low", "high", "p")


def mean_std(values):
    """(mean, sample standard deviation) of the non-missing values; std None below 2 values."""
    values = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not values:
        return None, None
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return float(np.mean(values)), std


def _dense_of(rows, row):
    for candidate in rows:
        if candidate.group == row.group and candidate.method == "dense":
            return candidate
    return None


def _small_dense_of(rows, row):
    """The capacity control of a sparse ``row``: the Small Dense row of its group at its
    sparsity (None for dense and Small Dense rows themselves)."""
    if row.method in ("dense", "small_dense"):
        return None
    for candidate in rows:
        if (candidate.group == row.group and candidate.method == "small_dense"
                and candidate.sparsity == row.sparsity):
            return candidate
    return None


# A row not in the paper that varies a paper method is also paired against that method's row
# (same group and sparsity): whether the variant costs accuracy is a question about the method
# it changes, not only about dense.
VARIES = {"fb_plus_channel": "fb_plus"}


def _base_of(rows, row):
    """The paper row of the method ``row`` varies (``VARIES``), in its group at its sparsity."""
    method = VARIES.get(row.method)
    for candidate in rows:
        if (method and candidate.group == row.group and candidate.method == method
                and candidate.sparsity == row.sparsity):
            return candidate
    return None


def _by_seed(runs, key):
    """{seed: value}; a run's seed is its ``seed`` entry, else its position (1-based)."""
    return {int(r.get("seed", i)): r.get(key) for i, r in enumerate(runs, 1)}


def summarize(paper_rows, results):
    """One dict per paper row that has results.

    Args:
      paper_rows: `paper.PaperRow`s of one table (in the paper's order).
      results: {row id: [results.json dict of each seed]}; a dict's ``seed`` entry pairs it
        with the dense row's run of the same seed (else its position in the list, from 1).
    Returns:
      dicts with `row`, `setting`, `group`, `sparsity`, `method`, `seeds`, per metric
      `<m>_mean`, `<m>_std`, `<m>_paper`, `<m>_diff` (ours - paper; None where either is
      missing), and for RA best, RA final and RGG of a non-dense row `paired_<m>`: the per-seed
      difference row - dense (`paired.paired_difference`), None for the dense row itself; and
      `paired_small_<m>`: row - Small Dense at the row's sparsity (the capacity control), None
      where the table has no such Small Dense run or the row is dense or Small Dense; and
      `paired_base_<m>`: row - the paper method it varies (`VARIES`; e.g. channel-level Flying
      Bird+ - Flying Bird+), None for every other row; `base_setting` names that method.
    """
    stats = {}
    for row in paper_rows:
        runs = results.get(row.row) or []
        if runs:
            stats[row.row] = {m: mean_std([r.get(key) for r in runs])
                              for m, key in RESULT_KEYS.items()}
    out = []
    for row in paper_rows:
        if row.row not in stats:
            continue
        ours = dict(stats[row.row])
        paper = dict(row.values)
        dense = _dense_of(paper_rows, row)
        dense_ours = stats.get(dense.row) if dense is not None else None
        for kind in FLOPS:
            ours[f"{kind}_pct"] = (None, None)
            paper[f"{kind}_pct"] = None
            if dense_ours and dense_ours[kind][0] and ours[kind][0] is not None:
                ours[f"{kind}_pct"] = (100.0 * ours[kind][0] / dense_ours[kind][0], None)
            if dense is not None and dense.values.get(kind) and paper.get(kind) is not None:
                paper[f"{kind}_pct"] = 100.0 * paper[kind] / dense.values[kind]
        ours["seconds_pct"] = (None, None)  # measured only: the paper reports no time
        if dense_ours and dense_ours["seconds"][0] and ours["seconds"][0] is not None:
            ours["seconds_pct"] = (100.0 * ours["seconds"][0] / dense_ours["seconds"][0], None)
        ours["rgg_reduction"] = (None, None)
        if row.method != "dense" and dense_ours and dense_ours["rgg"][0] is not None \
                and ours["rgg"][0] is not None:
            # No spread here: the paired interval (below) is the difference's uncertainty.
            ours["rgg_reduction"] = (dense_ours["rgg"][0] - ours["rgg"][0], None)
        entry = {"table": row.table, "row": row.row, "setting": row.setting, "group": row.group,
                 "arch": row.arch, "sparsity": row.sparsity, "method": row.method,
                 "seeds": len(results[row.row]), "gin": row.gin}
        for metric in PAIRED:
            entry[f"paired_{metric}"] = None
            if row.method != "dense" and dense_ours is not None:
                key = RESULT_KEYS[metric]
                entry[f"paired_{metric}"] = paired.paired_difference(
                    _by_seed(results[row.row], key), _by_seed(results[dense.row], key))
            for prefix, other in (("paired_small_", _small_dense_of(paper_rows, row)),
                                  ("paired_base_", _base_of(paper_rows, row))):
                entry[f"{prefix}{metric}"] = None
                if other is not None and results.get(other.row):
                    key = RESULT_KEYS[metric]
                    entry[f"{prefix}{metric}"] = paired.paired_difference(
                        _by_seed(results[row.row], key), _by_seed(results[other.row], key))
            entry["base_setting"] = (_base_of(paper_rows, row) or row).setting
        for metric in CSV_METRICS:
            mean, std = ours.get(metric, (None, None))
            ref = paper.get(metric)
            entry[f"{metric}_mean"], entry[f"{metric}_std"], entry[f"{metric}_paper"] = \
                mean, std, ref
            entry[f"{metric}_diff"] = None if mean is None or ref is None else mean - ref
        out.append(entry)
    return out


DATASET_NAMES = {"animals": "animal silhouettes (28x28 grayscale, 10 classes)",
                 "digits": "8x8 digits", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100",
                 "tiny_imagenet": "Tiny-ImageNet",
                 "synthetic": "synthetic CIFAR-shaped images (32x32x3, 10 classes)"}


def title(key, scale, seeds):
    """The line above a reproduced table: what the numbers are."""
    return (f"Table {key}, scale {scale}, {seeds} seed(s) per row: ours = mean ± sample std "
            "over seeds; difference = ours - paper" +
            ("" if scale == "paper" else f" (scale {scale} trains on other data with another "
             "schedule: the difference says how far apart, not an error)") + ". Seconds: each "
            "run's wall time (`seconds` in results.json: training with its per-epoch "
            "evaluation and the final evaluation, in the process that finished the run, so from "
            "its resume for a resumed one), beside the FLOPs; the paper reports none.")


def describe_config(cfg):
    """What a run trained on and how it was scored, in words, from its ``config.json``."""
    width = (cfg.get("arch_kwargs") or {}).get("width")
    images = cfg.get("max_train")
    parts = [f"{DATASET_NAMES.get(cfg.get('dataset'), cfg.get('dataset'))}, "
             f"{'the first ' + str(images) if images else 'all'} training images"
             f"{'' if cfg.get('augment', True) else ', no augmentation'}",
             f"{cfg.get('arch')}" + (f" width {width}" if width else ""),
             f"{cfg.get('epochs')} epochs (lr {cfg.get('lr')}, x{cfg.get('gamma', 0.1)} at "
             f"{', '.join(str(m) for m in cfg.get('milestones') or ()) or 'no epoch'})",
             f"PGD-{cfg.get('train_steps')} training at eps {cfg.get('train_eps'):.4g}"]
    per_epoch = (f"PGD-{cfg.get('eval_steps')} per epoch on "
                 f"{cfg.get('max_eval') or 'all'} validation images (the best epoch's choice)")
    if cfg.get("final_test"):
        step = cfg.get("final_test_step_size") or cfg.get("eval_step_size")
        parts.append(f"{per_epoch}; test RA of the best and final models on the whole test "
                     f"split with PGD-{cfg.get('final_test_steps')} (step {step:.4g}), train RA "
                     "for the RGG with the same attack")
    else:
        parts.append(f"PGD-{cfg.get('eval_steps')} evaluation on {cfg.get('max_eval') or 'all'} "
                     "validation and test images")
    return "; ".join(parts)


def _pm(mean, std, digits=2):
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _num(value, digits=2, sign=False):
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _flops(mean, pct):
    if mean is None:
        return "-"
    return f"{mean:.3g}" + ("" if pct is None else f" ({pct:.0f}%)")


def _seconds(mean, std, pct):
    if mean is None:
        return "-"
    return (f"{mean:.0f}" + ("" if std is None else f" ± {std:.0f}") +
            ("" if pct is None else f" ({pct:.0f}%)"))


# What the paper calls each of our architecture ids.
PAPER_ARCH = {"preact_resnet18": "ResNet-18 in the paper; PreActResNet-18 in the authors' code",
              "vgg16": "VGG-16", "wide_resnet34_10": "WideResNet-34-10"}

PAIRED_HEADER = (
    "Paired against the dense row: for each seed, this row's number minus the dense row's (the "
    "rows of one seed share the data order, the attack random starts and, where the "
    "architecture is the same, the initial weights (Small Dense is narrower), so the per-seed "
    "difference cancels what the seed does to both). Mean [95% Student-t interval] "
    "and two-sided p over the n seeds both rows have; **resolved** when the interval excludes 0; "
    "n/a below 2 pairs.")


PAIRED_SMALL_HEADER = (
    "Paired against Small Dense at the same sparsity (the paper's capacity control: a dense net "
    "narrowed to about the sparse net's parameter count): for each seed, this row's number minus "
    "Small Dense's (same data order and attack random starts; the initial weights differ, the "
    "nets do). A sparse row that beats dense-at-equal-capacity here, and not only dense above, "
    "is what \"sparsity helps\" would need. Same statistics as above.")


PAIRED_BASE_HEADER = (
    "Paired against the paper method a row not in the paper varies (channel-level Flying Bird+ "
    "against Flying Bird+, same sparsity): for each seed, this row's number minus that method's "
    "(same data order, attack random starts and initial weights). Whether the variant costs "
    "accuracy against the method it changes, not only against dense. Same statistics as above.")


def _paired_cell(stats):
    if not stats or stats["mean"] is None:
        return "-"
    if stats["low"] is None:
        return f"{stats['mean']:+.2f} (n/a, n={stats['n']})"
    cell = (f"{stats['mean']:+.2f} [{stats['low']:+.2f}, {stats['high']:+.2f}], "
            f"p={stats['p']:.3f}")
    return f"**{cell}**" if paired.resolved(stats) else cell


def paired_markdown(entries, against="dense"):
    """The paired table of one group's rows (RA best, RA final, RGG): ``against="dense"``, every
    non-dense row minus dense; ``"small_dense"``, every sparse row minus Small Dense at its
    sparsity (empty where no such pair exists); ``"base"``, every row not in the paper minus the
    paper method it varies (``VARIES``)."""
    prefix, name, header_text = {
        "dense": ("paired_", "dense", PAIRED_HEADER),
        "small_dense": ("paired_small_", "Small Dense", PAIRED_SMALL_HEADER),
        "base": ("paired_base_", "base", PAIRED_BASE_HEADER)}[against]
    rows = [e for e in entries if any(e.get(f"{prefix}{m}") for m in PAIRED)]
    if not rows:
        return []
    if against == "base":
        names = sorted({e["base_setting"] for e in rows})
        name = names[0] if len(names) == 1 else "its base"
    header = ["Sparsity (%)", "Setting", "pairs"] + [f"{PAIRED_NAMES[m]}: row - {name}"
                                                     for m in PAIRED]
    out = [header_text, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for e in rows:
        n = max((e[f"{prefix}{m}"] or {}).get("n", 0) for m in PAIRED)
        out.append("| " + " | ".join([f"{e['sparsity']:.0f}", e["setting"], str(n)] +
                                     [_paired_cell(e[f"{prefix}{m}"]) for m in PAIRED]) + " |")
    return out


def markdown(summary, title=None, trained=None):
    """Per group: for each row an `ours` line (mean ± std over seeds), the `paper` line and the
    difference (ours - paper; FLOPs compared as % of the dense row), then the paired table.

    ``trained``: what our runs trained on, when it is not the paper's setting (e.g. the offline
    scale); the group heading then names both, so the paper's dataset never heads other data.
    """
    header = ["Sparsity (%)", "Setting", "", "RA best", "RA final", "RA diff", "SA best",
              "SA final", "SA diff", "Training FLOPs (% dense)", "Inference FLOPs (% dense)",
              "Seconds (% dense)", "RGG", "RGG reduction"]
    out = [title, ""] if title else []
    groups = []
    for e in summary:
        if not groups or groups[-1][0] != e["group"]:
            groups.append((e["group"], []))
        groups[-1][1].append(e)
    for group, entries in groups:
        if out and out[-1] != "":
            out.append("")
        arch = entries[0]["arch"]
        paper_arch = PAPER_ARCH.get(arch, arch)
        heading = (f"**{group} / {arch}** (the paper's dataset; {paper_arch})" if not trained
                   else f"**Ours: {trained}. Paper: {group}, {paper_arch}** (the rows marked "
                   "paper)")
        out += [heading, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for e in entries:
            lead = [f"{e['sparsity']:.0f}", e["setting"]]
            ours = [_pm(e[f"{m}_mean"], e[f"{m}_std"]) for m in ACCURACY]
            ours += [_flops(e[f"{k}_mean"], e[f"{k}_pct_mean"]) for k in FLOPS]
            ours += [_seconds(e["seconds_mean"], e["seconds_std"], e["seconds_pct_mean"])]
            ours += [_pm(e["rgg_mean"], e["rgg_std"]), _pm(e["rgg_reduction_mean"],
                                                          e["rgg_reduction_std"])]
            paper = [_num(e[f"{m}_paper"]) for m in ACCURACY]
            paper += [_flops(e[f"{k}_paper"], e[f"{k}_pct_paper"]) for k in FLOPS]
            paper += ["-"]  # the paper reports no wall time
            paper += [_num(e["rgg_paper"]), _num(e["rgg_reduction_paper"])]
            diff = [_num(e[f"{m}_diff"], sign=True) for m in ACCURACY]
            diff += [_num(e[f"{k}_pct_diff"], 0, sign=True) + (" pts" if e[f"{k}_pct_diff"]
                                                               is not None else "")
                     for k in FLOPS]
            diff += ["-"]
            diff += [_num(e["rgg_diff"], sign=True), _num(e["rgg_reduction_diff"], sign=True)]
            out.append("| " + " | ".join(lead + [f"ours (n={e['seeds']})"] + ours) + " |")
            if all(v == "-" for v in paper):
                out.append("| " + " | ".join(["", "", "paper"] + ["not in the paper"] +
                                             ["-"] * (len(paper) - 1)) + " |")
                continue
            out.append("| " + " | ".join(["", "", "paper"] + paper) + " |")
            out.append("| " + " | ".join(["", "", "ours - paper"] + diff) + " |")
        for against in ("dense", "small_dense", "base"):
            block = paired_markdown(entries, against)
            if block:
                out += [""] + block
    return "\n".join(out)


CSV_COLUMNS = ["table", "row", "setting", "group", "arch", "sparsity", "method", "seeds", "gin"] + \
    [f"{m}_{part}" for m in CSV_METRICS for part in ("mean", "std", "paper", "diff")] + \
    [f"paired_{m}_{part}" for m in PAIRED for part in PAIRED_PARTS] + \
    [f"paired_small_{m}_{part}" for m in PAIRED for part in PAIRED_PARTS] + \
    [f"paired_base_{m}_{part}" for m in PAIRED for part in PAIRED_PARTS]


def csv_text(summary):
    """Every number at full precision; empty cells where a value does not exist."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n",
                            extrasaction="ignore")
    writer.writeheader()
    for e in summary:
        flat = dict(e)
        for m in PAIRED:
            for part in PAIRED_PARTS:
                flat[f"paired_{m}_{part}"] = (e.get(f"paired_{m}") or {}).get(part)
                flat[f"paired_small_{m}_{part}"] = (e.get(f"paired_small_{m}") or {}).get(part)
                flat[f"paired_base_{m}_{part}"] = (e.get(f"paired_base_{m}") or {}).get(part)
        writer.writerow({k: ("" if flat.get(k) is None else flat.get(k)) for k in CSV_COLUMNS})
    return buffer.getvalue()
