"""A paper table reproduced over seeds: mean +- std per row next to the paper's number and the
difference, as Markdown and CSV.

Why its own module: `table.py` lays out single runs; a reproduction needs the seed spread (a
number without it is an anecdote) and the published value beside it. RGG reductions are taken
against the dense row of the same group (dataset / architecture) of the same table:
mean(RGG dense) - mean(RGG row), with the two spreads combined as independent
(sqrt(sd_dense^2 + sd_row^2)) because seeds are not paired across methods. FLOPs are also shown as
a percentage of that dense row, the only form in which ours and the paper's compare (the paper's
inference column has an unexplained scale, README "FLOPs"; other scales train on other data).
"""
import csv
import io
import math

import numpy as np

# Our key in results.json for each metric of the paper's tables.
RESULT_KEYS = {"ra_best": "ra_best", "ra_final": "ra_final", "ra_diff": "ra_diff",
               "sa_best": "sa_best", "sa_final": "sa_final", "sa_diff": "sa_diff",
               "training_flops": "training_flops", "inference_flops": "inference_flops",
               "rgg": "rgg_final"}
ACCURACY = ("ra_best", "ra_final", "ra_diff", "sa_best", "sa_final", "sa_diff")
FLOPS = ("training_flops", "inference_flops")
CSV_METRICS = ACCURACY + FLOPS + ("training_flops_pct", "inference_flops_pct", "rgg",
                                  "rgg_reduction")


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


def summarize(paper_rows, results):
    """One dict per paper row that has results.

    Args:
      paper_rows: `paper.PaperRow`s of one table (in the paper's order).
      results: {row id: [results.json dict of each seed]}.
    Returns:
      dicts with `row`, `setting`, `group`, `sparsity`, `method`, `seeds`, and per metric
      `<m>_mean`, `<m>_std`, `<m>_paper`, `<m>_diff` (ours - paper; None where either is missing).
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
        ours["rgg_reduction"] = (None, None)
        if row.method != "dense" and dense_ours and dense_ours["rgg"][0] is not None \
                and ours["rgg"][0] is not None:
            sds = [s for s in (dense_ours["rgg"][1], ours["rgg"][1]) if s is not None]
            ours["rgg_reduction"] = (dense_ours["rgg"][0] - ours["rgg"][0],
                                     math.sqrt(sum(s * s for s in sds)) if sds else None)
        entry = {"table": row.table, "row": row.row, "setting": row.setting, "group": row.group,
                 "arch": row.arch, "sparsity": row.sparsity, "method": row.method,
                 "seeds": len(results[row.row]), "gin": row.gin}
        for metric in CSV_METRICS:
            mean, std = ours.get(metric, (None, None))
            ref = paper.get(metric)
            entry[f"{metric}_mean"], entry[f"{metric}_std"], entry[f"{metric}_paper"] = \
                mean, std, ref
            entry[f"{metric}_diff"] = None if mean is None or ref is None else mean - ref
        out.append(entry)
    return out


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


def markdown(summary, title=None):
    """Per group: for each row an `ours` line (mean ± std over seeds), the `paper` line and the
    difference (ours - paper; FLOPs compared as % of the dense row)."""
    header = ["Sparsity (%)", "Setting", "", "RA best", "RA final", "RA diff", "SA best",
              "SA final", "SA diff", "Training FLOPs (% dense)", "Inference FLOPs (% dense)",
              "RGG", "RGG reduction"]
    out = [title, ""] if title else []
    group = None
    for e in summary:
        if e["group"] != group:
            group = e["group"]
            if out and out[-1] != "":
                out.append("")
            out += [f"**{group} / {e['arch']}** (the paper's dataset / architecture)", "",
                    "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lead = [f"{e['sparsity']:.0f}", e["setting"]]
        ours = [_pm(e[f"{m}_mean"], e[f"{m}_std"]) for m in ACCURACY]
        ours += [_flops(e[f"{k}_mean"], e[f"{k}_pct_mean"]) for k in FLOPS]
        ours += [_pm(e["rgg_mean"], e["rgg_std"]), _pm(e["rgg_reduction_mean"],
                                                      e["rgg_reduction_std"])]
        paper = [_num(e[f"{m}_paper"]) for m in ACCURACY]
        paper += [_flops(e[f"{k}_paper"], e[f"{k}_pct_paper"]) for k in FLOPS]
        paper += [_num(e["rgg_paper"]), _num(e["rgg_reduction_paper"])]
        diff = [_num(e[f"{m}_diff"], sign=True) for m in ACCURACY]
        diff += [_num(e[f"{k}_pct_diff"], 0, sign=True) + (" pts" if e[f"{k}_pct_diff"]
                                                           is not None else "")
                 for k in FLOPS]
        diff += [_num(e["rgg_diff"], sign=True), _num(e["rgg_reduction_diff"], sign=True)]
        out.append("| " + " | ".join(lead + [f"ours (n={e['seeds']})"] + ours) + " |")
        out.append("| " + " | ".join(["", "", "paper"] + paper) + " |")
        out.append("| " + " | ".join(["", "", "ours - paper"] + diff) + " |")
    return "\n".join(out)


CSV_COLUMNS = ["table", "row", "setting", "group", "arch", "sparsity", "method", "seeds", "gin"] + \
    [f"{m}_{part}" for m in CSV_METRICS for part in ("mean", "std", "paper", "diff")]


def csv_text(summary):
    """Every number at full precision; empty cells where a value does not exist."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n",
                            extrasaction="ignore")
    writer.writeheader()
    for e in summary:
        writer.writerow({k: ("" if e.get(k) is None else e.get(k)) for k in CSV_COLUMNS})
    return buffer.getvalue()
