"""Best / Final / Diff and RGG on a synthetic metric history, checked by hand."""
import pytest

from birds_tf.metrics import protocol


HISTORY = [
    {"epoch": 1, "val_ra": 30.0, "test_ra": 29.0, "test_sa": 60.0},
    {"epoch": 2, "val_ra": 45.0, "test_ra": 44.0, "test_sa": 70.0},
    {"epoch": 3, "val_ra": 45.0, "test_ra": 46.0, "test_sa": 72.0},  # tie: first max wins
    {"epoch": 4, "val_ra": 40.0, "test_ra": 41.0, "test_sa": 75.0},
]


def test_best_final_diff_uses_first_best_validation_epoch():
    out = protocol.best_final_diff(HISTORY)
    assert out["best_epoch"] == 2
    assert out["ra_best"] == 44.0 and out["ra_final"] == 41.0 and out["ra_diff"] == 3.0
    assert out["sa_best"] == 70.0 and out["sa_final"] == 75.0 and out["sa_diff"] == -5.0


def test_rgg_and_reduction():
    assert protocol.robust_generalization_gap(82.43, 43.61) == pytest.approx(38.82)
    # Table 2, CIFAR-10: FB+ 23.89 against the dense 38.82 -> down 14.93.
    assert protocol.rgg_reduction(23.89, 38.82) == pytest.approx(14.93)


def test_empty_history_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        protocol.best_final_diff([])
