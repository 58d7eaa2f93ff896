"""Results in the layout of the paper's Table 1 (Markdown and CSV), from ``results.json`` dicts.

Columns: sparsity, method, RA best/final/diff, SA best/final/diff, training and inference
FLOPs, RGG and how much it shrinks against the dense row of the same dataset and architecture.
"""
import csv
import io
import math

from birds_tf.metrics import methods
from birds_tf.metrics.protocol import rgg_reduction

__all__ = ["METHOD_NAMES", "METHOD_ORDER", "PAPER_SCALES", "CSV_COLUMNS", "dense_reference",
           "table_rows", "markdown", "csv_text"]

# {method: the paper's name} and the paper's row order, both from ``metrics.methods`` (the one
# declaration of each method; a method declared later appears in them too).
METHOD_NAMES = methods.DISPLAY_NAMES
METHOD_ORDER = methods.ORDER
PAPER_SCALES = {"training_flops": 17, "inference_flops": 9}
CSV_COLUMNS = ("dataset", "arch", "sparsity", "final_sparsity", "method", "ra_best",
               "ra_final", "ra_diff", "sa_best", "sa_final", "sa_diff", "training_flops",
               "training_flops_paper_convention", "inference_flops", "rgg", "rgg_reduction",
               "workdir")


def _fmt(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f}"


def dense_reference(rows):
    """The (first) dense row of each (dataset, arch), against which RGG reductions are measured."""
    out = {}
    for r in rows:
        if r.get("method") == "dense":
            out.setdefault((r.get("dataset"), r.get("arch")), r)
    return out


def table_rows(results):
    """One flat row per run, ordered like the paper: dataset, arch, sparsity, method."""
    dense = dense_reference(results)
    rows = []
    for r in results:
        base = dense.get((r.get("dataset"), r.get("arch")))
        rgg = r.get("rgg_final")
        reduction = None
        if rgg is not None and base is not None and base is not r and \
                base.get("rgg_final") is not None:
            reduction = rgg_reduction(rgg, base["rgg_final"])
        row = {key: r.get(key) for key in CSV_COLUMNS}
        row.update(sparsity=100.0 * float(r.get("target_sparsity") or 0.0),
                   final_sparsity=100.0 * float(r.get("final_sparsity") or 0.0),
                   rgg=rgg, rgg_reduction=reduction)
        rows.append(row)
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    rows.sort(key=lambda row: (str(row["dataset"]), str(row["arch"]), round(row["sparsity"], 6),
                               order.get(row["method"], len(order)), str(row["method"])))
    return rows


def _exponent(values, fixed):
    if fixed is not None:
        return fixed
    values = [abs(v) for v in values if v]
    return int(math.floor(math.log10(max(values)))) if values else 0


def markdown(results, training="measured", scale="auto"):
    """Markdown tables, one per (dataset, arch); FLOPs columns share a power of ten.

    ``training``: "measured" (integrated over the run's real density) or "paper" (the paper's
    33 x F_inf x N x epochs convention); ``scale``: "auto" or "paper" (x10^17 and x10^9).
    """
    if training not in ("measured", "paper"):
        raise ValueError(f"training must be 'measured' or 'paper', got {training!r}.")
    if scale not in ("auto", "paper"):
        raise ValueError(f"scale must be 'auto' or 'paper', got {scale!r}.")
    rows = table_rows(results)
    train_key = "training_flops" if training == "measured" else "training_flops_paper_convention"
    exps = {key: _exponent([row[key] for row in rows],
                           PAPER_SCALES[key if key == "inference_flops" else "training_flops"]
                           if scale == "paper" else None)
            for key in (train_key, "inference_flops")}
    header = ["Sparsity (%)", "Method", "RA best", "RA final", "RA diff", "SA best", "SA final",
              "SA diff", f"Training FLOPs (x1e{exps[train_key]})",
              f"Inference FLOPs (x1e{exps['inference_flops']})", "RGG", "RGG reduction"]
    out, group = [], None
    for row in rows:
        if (row["dataset"], row["arch"]) != group:
            group = (row["dataset"], row["arch"])
            if out:
                out.append("")
            out += [f"**{row['dataset']} / {row['arch']}**", "",
                    "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        flops = [None if row[k] is None else row[k] / 10 ** exps[k]
                 for k in (train_key, "inference_flops")]
        cells = [_fmt(row["sparsity"], 0), METHOD_NAMES.get(row["method"], str(row["method"]))]
        cells += [_fmt(row[k]) for k in ("ra_best", "ra_final", "ra_diff", "sa_best",
                                         "sa_final", "sa_diff")]
        cells += [_fmt(v) for v in flops] + [_fmt(row["rgg"]), _fmt(row["rgg_reduction"])]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def csv_text(results):
    """Every column at full precision (FLOPs unscaled), for spreadsheets and plots."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, restval="", lineterminator="\n")
    writer.writeheader()
    for row in table_rows(results):
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buffer.getvalue()
