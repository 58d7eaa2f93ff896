"""Paired statistics (birds_tf.metrics.paired) against hand math and scipy.stats, and the
smoothed fall of robust overfitting (birds_tf.metrics.overfitting) against hand math."""
import math

import numpy as np
import pytest
from scipy import special, stats

from birds_tf.metrics import overfitting, paired


def test_three_seeds_by_hand():
    # The FB+ - dense RGG differences: -2.93, -10.74, -3.71.
    out = paired.paired_difference({1: 15.0, 2: 10.0, 3: 20.0}, {1: 17.93, 2: 20.74, 3: 23.71})
    d = [-2.93, -10.74, -3.71]
    mean = sum(d) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    half = 4.302652729749464 * sd / math.sqrt(3)  # t_{0.975, 2} from a printed t table
    assert out["n"] == 3 and out["seeds"] == [1, 2, 3]
    assert out["mean"] == pytest.approx(-5.7933333, abs=1e-6)
    assert out["sd"] == pytest.approx(sd)
    assert (out["low"], out["high"]) == pytest.approx((mean - half, mean + half))
    assert (round(out["low"], 1), round(out["high"], 1)) == (-16.5, 4.9)
    assert round(out["p"], 2) == 0.14
    assert not paired.resolved(out)


def test_two_pairs_closed_form():
    # df = 1 is the Cauchy distribution: P(|T| >= t) = 1 - 2 atan(t) / pi and
    # t_{0.975} = tan(0.475 pi).
    out = paired.paired_difference({1: 3.0, 2: 5.0}, {1: 0.0, 2: 0.0})
    t = 4.0 / (math.sqrt(2.0) / math.sqrt(2))
    assert out["p"] == pytest.approx(1 - 2 * math.atan(t) / math.pi, rel=1e-10)
    assert out["high"] - out["mean"] == pytest.approx(math.tan(0.475 * math.pi) * 1.0, rel=1e-9)


@pytest.mark.parametrize("n, shift", [(3, 0.5), (5, 2.0), (10, -1.0), (10, 0.0), (30, 0.3)])
def test_against_scipy(n, shift):
    rng = np.random.default_rng(n)
    ref = rng.normal(50, 3, n)
    row = ref + shift + rng.normal(0, 2, n)
    out = paired.paired_difference(dict(enumerate(row, 1)), dict(enumerate(ref, 1)))
    d = row - ref
    test = stats.ttest_rel(row, ref)
    low, high = stats.t.interval(0.95, n - 1, loc=d.mean(), scale=stats.sem(d))
    assert out["mean"] == pytest.approx(d.mean())
    assert out["p"] == pytest.approx(test.pvalue, rel=1e-9, abs=1e-14)
    assert (out["low"], out["high"]) == pytest.approx((low, high), rel=1e-9)
    assert paired.resolved(out) == (low > 0 or high < 0)


@pytest.mark.parametrize("a, b, x", [(0.5, 0.5, 0.3), (4.5, 0.5, 0.9), (1.0, 0.5, 0.999),
                                     (15.0, 0.5, 0.2), (2.0, 3.0, 0.6)])
def test_incomplete_beta_against_scipy(a, b, x):
    assert paired.betainc(a, b, x) == pytest.approx(special.betainc(a, b, x), rel=1e-12)


@pytest.mark.parametrize("df", [1, 2, 4, 9, 29])
def test_t_quantile_against_scipy(df):
    assert paired.t_quantile(0.975, df) == pytest.approx(stats.t.ppf(0.975, df), rel=1e-10)


def test_pairs_by_seed_and_below_two_pairs_no_interval():
    out = paired.paired_difference({1: 5.0, 2: 6.0, 4: 9.0}, {2: 1.0, 3: 2.0, 4: None})
    assert out["seeds"] == [2] and out["n"] == 1 and out["mean"] == 5.0
    assert out["low"] is None and out["p"] is None and not paired.resolved(out)
    empty = paired.paired_difference({1: 1.0}, {2: 1.0})
    assert empty["n"] == 0 and empty["mean"] is None


def test_zero_spread_and_bad_input():
    same = paired.paired_difference({1: 2.0, 2: 3.0}, {1: 1.0, 2: 2.0})
    assert (same["low"], same["high"], same["p"]) == (1.0, 1.0, 0.0) and paired.resolved(same)
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\), got 95"):
        paired.paired_difference({1: 1.0}, {1: 1.0}, confidence=95)
    with pytest.raises(ValueError, match=r"x must be in \[0, 1\], got 2"):
        paired.betainc(1.0, 1.0, 2)


def test_smoothed_fall_by_hand():
    curve = [10, 20, 30, 40, 50, 48, 46, 40, 38, 36]
    # 3-epoch windows: best mean (50+48+46)/3 = 48, last (40+38+36)/3 = 38.
    assert overfitting.smoothed_drop(curve, 3) == pytest.approx(48 - 38)
    assert overfitting.smoothed_drop([5, 1], 5) == pytest.approx(0.0)   # one window: no fall
    with pytest.raises(ValueError, match="window must be an integer >= 1, got 0"):
        overfitting.smoothed_drop(curve, 0)
    history = [{"val_ra": v} for v in curve]
    signs = overfitting.validation_signs(history, {"train_ra_final": 70.0}, window=3)
    assert (signs["drop"], signs["drop_smoothed"], signs["rgg_val"]) == pytest.approx(
        (50 - 36, 10.0, 70 - 36))
    # With a final test, the gap uses the validation RA under the final attack.
    signs = overfitting.validation_signs(history, {"train_ra_final": 70.0,
                                                   "val_ra_final_final_attack": 30.0})
    assert signs["rgg_val"] == pytest.approx(40.0)
    assert overfitting.meets(15.0, 3.0) and not overfitting.meets(14.9, 10) \
        and not overfitting.meets(20, 2.9)
