"""The paper's reporting protocol (Appendix A2.1), as pure functions of a metric history.

Best = the test metric at the epoch with the highest validation RA (first such epoch), Final =
the last epoch, Diff = Best - Final; the robust generalization gap is measured on the final
model: PGD-20 RA on the whole training split (eval mode, no augmentation) minus test RA.
"""


def best_epoch_index(history):
    """Index of the first epoch with the highest validation robust accuracy."""
    if not history:
        raise ValueError("The metric history is empty: no epoch was completed.")
    val_ra = [float(row["val_ra"]) for row in history]
    return val_ra.index(max(val_ra))


def best_final_diff(history):
    best = best_epoch_index(history)
    row_best, row_final = history[best], history[-1]
    out = {"best_epoch": int(row_best.get("epoch", best + 1))}
    for key, column in (("ra", "test_ra"), ("sa", "test_sa")):
        out[f"{key}_best"] = float(row_best[column])
        out[f"{key}_final"] = float(row_final[column])
        out[f"{key}_diff"] = out[f"{key}_best"] - out[f"{key}_final"]
    return out


def robust_generalization_gap(train_ra, test_ra):
    """Train RA minus test RA, both PGD-20 on the final model, in percentage points."""
    return float(train_ra) - float(test_ra)


def rgg_reduction(rgg, dense_rgg):
    """How many points a method shrinks the dense baseline's gap (the paper's arrow column)."""
    return float(dense_rgg) - float(rgg)
