"""The two signs of robust overfitting (paper Appendix A2.1), measured on the validation split.

Why: the offline setting is chosen on the dense row's validation split only, before any sparse
row runs, as one where dense PGD-AT shows both signs: a robust generalization gap (train RA -
held-out RA of the final model) of at least ``MIN_RGG`` points, and a fall of held-out RA after
its peak (best - final) of at least ``MIN_DROP`` points. The peak of a noisy per-epoch curve is
biased upward (a maximum of noisy values), so the fall is also measured smoothed: the highest
``window``-epoch moving average minus the mean of the last ``window`` epochs; the choice uses
the smoothed fall, and prints the raw one beside it.
"""
MIN_RGG = 15.0
MIN_DROP = 3.0
WINDOW = 5


def smoothed_drop(values, window=WINDOW):
    """Highest ``window``-long moving average minus the mean of the last ``window`` values."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("smoothed_drop needs at least one value.")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an integer >= 1, got {window!r}.")
    window = min(window, len(values))
    means = [sum(values[i:i + window]) / window for i in range(len(values) - window + 1)]
    return max(means) - means[-1]


def validation_signs(history, results, window=WINDOW):
    """Both signs of one run, from its ``metrics.csv`` rows and ``results.json``.

    The gap pairs the final model's train RA with its validation RA under the same attack:
    ``val_ra_final_final_attack`` when the run had a final test (``train_eval.final_test``),
    else the last epoch's ``val_ra`` (the per-epoch attack, which then also measured train RA).

    Returns:
      ``{"val_ra_best", "val_ra_final", "drop", "drop_smoothed", "train_ra", "val_ra_gap",
      "rgg_val"}`` in percentage points.
    """
    val = [float(row["val_ra"]) for row in history]
    if not val:
        raise ValueError("The metric history is empty: no epoch was completed.")
    train_ra = results.get("train_ra_final")
    gap_val = results.get("val_ra_final_final_attack", val[-1])
    return {"val_ra_best": max(val), "val_ra_final": val[-1], "drop": max(val) - val[-1],
            "drop_smoothed": smoothed_drop(val, window), "train_ra": train_ra,
            "val_ra_gap": gap_val,
            "rgg_val": None if train_ra is None else float(train_ra) - float(gap_val)}


def meets(mean_rgg, mean_drop_smoothed):
    """Whether the means over seeds show both signs (the setting search's criterion)."""
    return mean_rgg >= MIN_RGG and mean_drop_smoothed >= MIN_DROP
