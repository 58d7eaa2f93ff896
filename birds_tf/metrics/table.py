"""Results rows in the layout of the paper's tables (Markdown), from ``results.json`` dicts."""
from birds_tf.metrics.protocol import rgg_reduction

METHOD_NAMES = {"dense": "Baseline", "fb": "Flying Bird", "fb_plus": "Flying Bird+",
                "rb": "Robust Bird"}


def _fmt(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f}"


def dense_reference(rows):
    """The dense row of each (dataset, arch), against which RGG reductions are measured."""
    return {(r["dataset"], r["arch"]): r for r in rows if r.get("method") == "dense"}


def markdown(rows):
    dense = dense_reference(rows)
    header = ("| Sparsity (%) | Method | RA best | RA final | RA diff | SA best | SA final | "
              "SA diff | RGG |")
    lines = [header, "|" + "---|" * 9]
    for r in rows:
        rgg = r.get("rgg_final")
        cell = _fmt(rgg)
        base = dense.get((r["dataset"], r["arch"]))
        if rgg is not None and base is not None and base is not r and \
                base.get("rgg_final") is not None:
            cell += f" (down {_fmt(rgg_reduction(rgg, base['rgg_final']))})"
        lines.append("| " + " | ".join([
            _fmt(100 * r.get("final_sparsity", 0.0), 1),
            METHOD_NAMES.get(r["method"], r["method"]),
            _fmt(r["ra_best"]), _fmt(r["ra_final"]), _fmt(r["ra_diff"]),
            _fmt(r["sa_best"]), _fmt(r["sa_final"]), _fmt(r["sa_diff"]), cell]) + " |")
    return "\n".join(lines)
