"""AutoAttack's cascade and settings, and the gradient-masking sanity checks."""
import importlib
import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import attack_helpers as H
from birds_tf import attacks
from birds_tf.attacks import sanity
from birds_tf.attacks.registry import run_attack

aa_mod = importlib.import_module("birds_tf.attacks.autoattack")

EPS = 0.1
QUICK = dict(n_iter=10, n_target_classes=3, n_queries=50)


@pytest.fixture(scope="module")
def model():
    return H.conv_model()


@pytest.fixture(scope="module")
def data():
    return H.eval_split(300)


# --- the cascade ----------------------------------------------------------------------------

def test_standard_settings_are_the_originals():
    assert attacks.STANDARD == ("apgd-ce", "apgd-t", "fab-t", "square")
    defaults = {k: v.default for k, v in inspect.signature(attacks.autoattack).parameters.items()}
    assert defaults["eps"] == pytest.approx(8 / 255)
    assert aa_mod.standard_settings() == {
        "apgd-ce": dict(n_iter=100, n_restarts=1, loss="ce"),
        "apgd-t": dict(n_iter=100, n_restarts=1, n_target_classes=9),
        "fab-t": dict(n_iter=100, n_restarts=1, n_target_classes=9),
        "square": dict(n_queries=5000, p_init=0.8, n_restarts=1),
    }
    assert (defaults["n_iter"], defaults["n_restarts"], defaults["n_target_classes"],
            defaults["n_queries"]) == (100, 1, 9, 5000)


@settings(max_examples=3, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(eps=st.floats(0.02, 0.2), seed=st.integers(0, 2 ** 16))
def test_autoattack_is_never_above_apgd_ce(model, data, eps, seed):
    """APGD-CE is AutoAttack's first attack, with the same seed: robust flags can only shrink."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(data[0]), 60, replace=False)
    x, y = data[0][pick], data[1][pick]
    aa = run_attack("autoattack", model, x, y, eps=eps, batch_size=32, seed=seed, **QUICK)
    ce = run_attack("apgd_ce", model, x, y, eps=eps, batch_size=32, seed=seed, n_iter=10)
    assert not np.any(aa["robust"] & ~ce["robust"])
    assert aa["robust_accuracy"] <= ce["robust_accuracy"]


def test_autoattack_is_not_above_pgd20(model, data):
    x, y = data
    aa = run_attack("autoattack", model, x, y, eps=EPS, n_iter=20, n_target_classes=3,
                    n_queries=100)
    pgd = run_attack("pgd20", model, x, y, eps=EPS)
    assert aa["robust_accuracy"] <= pgd["robust_accuracy"]
    assert 0 < aa["robust_accuracy"] < aa["clean_accuracy"]  # not a vacuous comparison


def test_later_attacks_only_see_still_robust_examples(model, data, monkeypatch):
    x, y = data[0][:120], data[1][:120]
    seen = []
    for name, fn in list(aa_mod._FUNCS.items()):
        def spy(m, xs, ys, _fn=fn, _name=name, **kw):
            seen.append((_name, int(xs.shape[0])))
            return _fn(m, xs, ys, **kw)
        monkeypatch.setitem(aa_mod._FUNCS, name, spy)
    res = attacks.autoattack(model, x, y, eps=EPS, return_details=True, **QUICK)
    ra = res.robust_accuracy_after
    assert list(ra) == ["clean", *attacks.STANDARD]
    assert all(a >= b for a, b in zip(list(ra.values()), list(ra.values())[1:]))
    # each attack receives exactly the examples still robust after the previous one
    assert [name for name, _ in seen] == list(attacks.STANDARD)
    counts = [round(v * len(x) / 100) for v in ra.values()]
    assert [n for _, n in seen] == counts[:-1]
    assert res.robust.mean() * 100 == pytest.approx(ra["square"])
    pred = np.argmax(model.predict(res.x_adv, verbose=0), -1)
    np.testing.assert_array_equal(res.robust, pred == y)
    assert np.abs(res.x_adv - x).max() <= EPS + 1e-6
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1


def test_autoattack_eps_zero_and_bad_input(model, data):
    x, y = data[0][:50], data[1][:50]
    res = attacks.autoattack(model, x, y, eps=0.0, return_details=True, **QUICK)
    assert res.robust_accuracy_after["square"] == res.robust_accuracy_after["clean"]
    with pytest.raises(ValueError, match="apgd-dlr"):
        attacks.autoattack(model, x, y, attacks=("apgd-ce", "apgd-dlr"))
    with pytest.raises(ValueError, match="fab"):
        attacks.autoattack(model, x, y, options={"fab": {"n_iter": 3}})
    with pytest.raises(ValueError, match="-0.01"):
        attacks.autoattack(model, x, y, eps=-0.01)
    with pytest.raises(ValueError, match="-1"):
        run_attack("autoattack", model, x, y, eps=-1)


def test_options_override_one_attack(model, data, monkeypatch):
    x, y = data[0][:40], data[1][:40]
    got = {}
    real = aa_mod._FUNCS["square"]

    def spy(m, xs, ys, **kw):
        got.update(kw)
        return real(m, xs, ys, **kw)
    monkeypatch.setitem(aa_mod._FUNCS, "square", spy)
    attacks.autoattack(model, x, y, eps=0.3, attacks=("square",), options={"square": {
        "n_queries": 7}})
    assert got["n_queries"] == 7 and got["p_init"] == 0.8


# --- sanity checks --------------------------------------------------------------------------

class _Noisy(keras.layers.Layer):
    """Random logits on every call: a randomised 'defence'."""

    def __init__(self):
        super().__init__(name="noisy")

    def call(self, z):
        return z + tf.random.normal(tf.shape(z), stddev=2.0)


class _Quantised(keras.Model):
    """Rounds the input to the digits' 1/16 grid behind a stop_gradient: zero input gradient,
    the textbook masked model whose robustness is an artefact."""

    def __init__(self, inner):
        super().__init__(name="quantised")
        self.inner = inner

    def call(self, x, training=False):
        return self.inner(tf.stop_gradient(tf.round(x * 16.0) / 16.0), training=training)


def _wrap(model, *layers):
    return keras.Sequential([keras.Input((8, 8, 1)), model, *layers])


def test_random_outputs_are_flagged(model, data):
    x, y = data[0][:100], data[1][:100]
    assert sanity.check_randomized(model, x) == []
    noisy = _wrap(model, _Noisy())
    msgs = sanity.check_randomized(noisy, x)
    assert len(msgs) == 1 and "randomised" in msgs[0]
    res = attacks.autoattack(noisy, x[:20], y[:20], eps=EPS, return_details=True,
                             attacks=("apgd-ce",), n_iter=2)
    assert any("randomised" in m for m in res.warnings)


def test_probability_outputs_and_too_few_classes_are_flagged(model, data):
    x = data[0][:50]
    assert sanity.check_range_output(model, x) == []
    assert sanity.check_range_output(_wrap(model, keras.layers.Softmax()), x)
    assert sanity.check_n_classes(10, attacks.STANDARD) == []
    msgs = sanity.check_n_classes(5, attacks.STANDARD)
    assert any("APGD-T" in m for m in msgs) and any("FAB-T" in m for m in msgs)


def test_gradient_masking_is_flagged(model, data):
    x, y = data[0][:100], data[1][:100]
    masked = _Quantised(model)
    clean = 100 * np.mean(np.argmax(masked.predict(x, verbose=0), -1) == y)
    assert clean > 80
    # the honest model breaks completely at a large eps; the masked one does not move
    assert sanity.check_large_eps(model, x, y) == []
    assert sanity.check_zero_gradients(model, x, y) == []
    msgs = sanity.check_large_eps(masked, x, y)
    assert len(msgs) == 1 and "masked" in msgs[0]
    assert sanity.check_zero_gradients(masked, x, y)
    # its robust accuracy under PGD does not fall as eps grows, while Square's does
    sweep = {e: run_attack("pgd20", masked, x, y, eps=e)["robust_accuracy"]
             for e in (0.05, 0.1, 0.2)}
    assert any("does not fall" in m for m in sanity.check_eps_monotone(list(sweep),
                                                                       list(sweep.values())))
    results = {"pgd20": sweep[0.1],
               "square": run_attack("square", masked, x, y, eps=0.1, n_queries=200)}
    assert any("square" in m for m in sanity.check_attack_strength(results))
    everything = sanity.sanity_checks(masked, x, y, results=results, eps_sweep=sweep)
    assert len(everything) >= 4
    assert sanity.sanity_checks(model, x, y, large_eps=0.5) == []


def test_synthetic_result_checks():
    assert sanity.check_eps_monotone([0.01, 0.02, 0.03], [60, 40, 20]) == []
    rising = sanity.check_eps_monotone([0.01, 0.02, 0.03], [60, 40, 45])
    assert len(rising) == 1 and "rises" in rising[0]
    assert sanity.check_eps_monotone([0.0, 0.5], [0.0, 0.0]) == []
    assert sanity.check_attack_strength({"pgd20": 50.0, "autoattack": 45.0}) == []
    msgs = sanity.check_attack_strength({"pgd20": 40.0, "autoattack": 45.0})
    assert len(msgs) == 1 and "pgd20" in msgs[0] and "autoattack" in msgs[0]
    assert sanity.check_square_sr({"clean": 90, "apgd-ce": 50, "square": 49.9}) == []
    assert sanity.check_square_sr({"clean": 90, "apgd-ce": 50, "square": 45})
