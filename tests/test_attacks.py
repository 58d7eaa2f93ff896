"""Attacks checked against independent implementations: ART 1.20 (PGD, APGD-CE, Square, and
CW-L2 on a small subset), NumPy references in attack_helpers (CW-L2 and APGD-CE/-T, exact), and
linear programs (FAB's projection and FAB-T's minimal perturbation on a linear model). Plus
norm-ball properties, eps = 0, batching, transfer and bad-input checks."""
import importlib
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

import attack_helpers as H
from birds_tf import attacks, models
from birds_tf.attacks.fab import project_linf_hyperplane_box
from birds_tf.attacks.registry import ATTACKS, run_attack

# The package exports functions named like their modules (apgd, square); fetch the modules.
apgd_mod = importlib.import_module("birds_tf.attacks.apgd")
square_mod = importlib.import_module("birds_tf.attacks.square")

EPS = 0.1  # digits pixels come in steps of 1/16; at 0.1 about a third of the test set breaks

# Small settings so every attack runs in about a second on 2 cores.
QUICK = {
    "pgd20": {}, "cw_inf": {}, "cw_l2": dict(steps=10),
    "apgd_ce": dict(n_iter=10), "apgd_t": dict(n_iter=5, n_target_classes=3),
    "fab_t": dict(n_iter=5, n_target_classes=3), "square": dict(n_queries=30),
    "autoattack": dict(n_iter=5, n_target_classes=2, n_queries=20),
}
LINF = [name for name in ATTACKS if name != "cw_l2"]


@pytest.fixture(scope="module")
def model():
    return H.conv_model()


@pytest.fixture(scope="module")
def data():
    return H.eval_split(300)


def robust_accuracy(model, x_adv, y):
    return 100.0 * np.mean(np.argmax(model.predict(x_adv, verbose=0), -1) == y)


# --- PGD / CW-inf ---------------------------------------------------------------------------

def _margin_loss(y_true, y_pred):
    y_true = tf.cast(y_true, y_pred.dtype)
    true = tf.reduce_sum(y_true * y_pred, -1)
    return tf.reduce_mean(tf.reduce_max(y_pred - 1e4 * y_true, -1) - true)


@pytest.mark.parametrize("loss", ["ce", "cw"])
def test_deterministic_pgd_matches_art(model, data, loss):
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import TensorFlowV2Classifier
    x, y = data
    clf = TensorFlowV2Classifier(
        model=model, nb_classes=10, input_shape=(8, 8, 1), clip_values=(0.0, 1.0),
        loss_object=(_margin_loss if loss == "cw"
                     else keras.losses.CategoricalCrossentropy(from_logits=True)))
    art = ProjectedGradientDescent(clf, norm=np.inf, eps=EPS, eps_step=EPS / 4, max_iter=20,
                                   num_random_init=0, batch_size=len(x), verbose=False)
    ref = art.generate(x, np.eye(10)[y])
    ours = attacks.pgd_restarts(model, x, y, eps=EPS, step_size=EPS / 4, steps=20, loss=loss,
                                random_start=False).numpy()
    old = attacks.pgd_linf(model, x, y, eps=EPS, step_size=EPS / 4, steps=20, loss=loss,
                           random_start=False).numpy()
    clean_ok = np.argmax(model.predict(x, verbose=0), -1) == y
    # ART attacks every example; ours leave clean-misclassified ones untouched.
    np.testing.assert_allclose(ours[clean_ok], ref[clean_ok], atol=1e-5)
    np.testing.assert_allclose(old, ref, atol=1e-5)


def test_random_start_pgd_matches_art(model, data):
    from art.attacks.evasion import ProjectedGradientDescent
    x, y = data
    np.random.seed(0)
    art = ProjectedGradientDescent(H.art_classifier(model), norm=np.inf, eps=EPS,
                                   eps_step=EPS / 4, max_iter=20, num_random_init=1,
                                   batch_size=len(x), verbose=False)
    ref = robust_accuracy(model, art.generate(x, np.eye(10)[y]), y)
    ours = run_attack("pgd20", model, x, y, eps=EPS)["robust_accuracy"]
    assert abs(ours - ref) <= 2.0, (ours, ref)


def test_restarts_only_remove_robust_examples(model, data):
    x, y = data
    one = run_attack("cw_inf", model, x, y, eps=EPS, restarts=1)["robust"]
    three = run_attack("cw_inf", model, x, y, eps=EPS, restarts=3)["robust"]
    assert not np.any(three & ~one)


# --- APGD -----------------------------------------------------------------------------------

def test_apgd_ce_matches_art(model, data):
    from art.attacks.evasion import AutoProjectedGradientDescent
    x, y = data
    np.random.seed(0)
    art = AutoProjectedGradientDescent(H.art_classifier(model), norm=np.inf, eps=EPS,
                                       eps_step=2 * EPS, max_iter=100, nb_random_init=1,
                                       loss_type="cross_entropy", batch_size=len(x),
                                       verbose=False)
    ref = robust_accuracy(model, art.generate(x, np.eye(10)[y]), y)
    ours = run_attack("apgd_ce", model, x, y, eps=EPS)["robust_accuracy"]
    assert abs(ours - ref) <= 2.0, (ours, ref)


@pytest.mark.parametrize("loss", ["ce", "dlr-targeted"])
def test_apgd_single_run_matches_numpy_reference(data, loss):
    """Same start, same model: the step-size schedule, checkpoints and restarts from the best
    point must reproduce the reference iterate for iterate."""
    model = H.mlp_model()
    net = H.NumpyMLP(model)
    x, y = data
    ok = net.logits(x).argmax(1) == y
    x, y = x[ok][:150], y[ok][:150]
    y_target = np.argsort(net.logits(x), 1)[:, -2]
    x_init = apgd_mod.random_start(tf.constant(x), EPS, tf.constant([3, 4])).numpy()
    _, acc, _, adv = attacks.apgd_single_run(
        model, x, y, x_init, eps=EPS, n_iter=50, loss=loss,
        y_target=y_target if loss != "ce" else None)
    ref_acc, ref_adv = H.apgd_reference(net, x, y, x_init, EPS, 50,
                                        loss="ce" if loss == "ce" else "dlr", y_target=y_target)
    np.testing.assert_array_equal(acc.numpy(), ref_acc)
    close = np.abs(adv.numpy() - ref_adv).reshape(len(x), -1).max(1) < 1e-4
    assert close.mean() >= 0.98, close.mean()
    assert 0.05 < acc.numpy().mean() < 0.95  # the comparison is not vacuous


def test_apgd_t_first_target_is_one_seeded_single_run(model, data):
    x, y = data
    ok = np.argmax(model.predict(x, verbose=0), -1) == y
    xs, ys = x[ok], y[ok]
    adv = attacks.apgd_targeted(model, xs, ys, eps=EPS, n_iter=10, n_target_classes=1, seed=5)
    y_target = np.argsort(model.predict(xs, verbose=0), 1)[:, -2]
    start = apgd_mod.random_start(tf.constant(xs), EPS, tf.constant([5, 2000]))
    _, acc, _, _ = attacks.apgd_single_run(model, xs, ys, start, eps=EPS, n_iter=10,
                                           loss="dlr-targeted", y_target=y_target)
    robust = np.argmax(model.predict(adv.numpy(), verbose=0), -1) == ys
    np.testing.assert_array_equal(robust, acc.numpy())


def test_apgd_checkpoints_follow_the_paper():
    # p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06): lengths 22, 19, 16...
    assert apgd_mod.schedule(100) == (22, 6, 3)


# --- CW-L2 ----------------------------------------------------------------------------------

def test_cw_l2_matches_numpy_reference(data):
    model = H.mlp_model()
    net = H.NumpyMLP(model)
    x, y = data
    ok = net.logits(x).argmax(1) == y
    x, y = x[ok][:150], y[ok][:150]
    ours = attacks.cw_l2(model, x, y, c=1.0, steps=100, learning_rate=0.01).numpy()
    ref = H.cw_l2_reference(net, x, y, c=1.0, steps=100, lr=0.01)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    broken = np.argmax(model.predict(ours, verbose=0), -1) != y
    assert 0.05 < broken.mean() < 0.95


@pytest.mark.skipif(not os.environ.get("BIRDS_SLOW_TESTS"),
                    reason="ART's CW-L2 takes 20-30 s here; set BIRDS_SLOW_TESTS=1 to run it")
def test_cw_l2_close_to_art_on_a_subset(model, data):
    """ART's CW-L2 replaces Adam by a line search and costs about 0.3 s per iteration whatever
    the batch, so it is opt-in and gets 60 images; robust accuracy must agree within 2 points.
    The exact check of CW-L2 is the NumPy reference above."""
    from art.attacks.evasion import CarliniL2Method
    x, y = data[0][:60], data[1][:60]
    art = CarliniL2Method(H.art_classifier(model), confidence=0.0, targeted=False,
                          learning_rate=0.01, binary_search_steps=1, max_iter=100,
                          initial_const=0.1, batch_size=len(x), verbose=False)
    ref = robust_accuracy(model, art.generate(x, np.eye(10)[y]), y)
    ours = run_attack("cw_l2", model, x, y)["robust_accuracy"]
    assert abs(ours - ref) <= 2.0, (ours, ref)


# --- Square ---------------------------------------------------------------------------------

def test_square_matches_art(model, data):
    from art.attacks.evasion import SquareAttack
    x, y = data
    np.random.seed(0)
    # ART rescales the p schedule to its query budget, i.e. the original's resc_schedule=True.
    art = SquareAttack(H.art_classifier(model), norm=np.inf, eps=EPS, max_iter=500, p_init=0.8,
                       nb_restarts=1, batch_size=len(x), verbose=False)
    ref = robust_accuracy(model, art.generate(x, np.eye(10)[y]), y)
    ours = run_attack("square", model, x, y, eps=EPS, n_queries=500,
                      resc_schedule=True)["robust_accuracy"]
    assert abs(ours - ref) <= 2.0, (ours, ref)


def test_square_p_schedule_is_the_original():
    its = [0, 10, 11, 50, 51, 200, 201, 500, 501, 1000, 1001, 2000, 2001, 4000, 4001, 6000, 6001,
           8000, 8001, 9999]
    halvings = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9]
    got = [float(square_mod.p_selection(0.8, it, 5000)) for it in its]
    np.testing.assert_allclose(got, [0.8 / 2 ** h for h in halvings], rtol=1e-6)
    # rescaled: query 100 of 1000 is query 1000 of 10000
    assert float(square_mod.p_selection(0.8, 100, 1000, resc_schedule=True)) == \
        pytest.approx(0.8 / 16)


# --- FAB ------------------------------------------------------------------------------------

def _lp_min_linf(t, w, b, equality=True):
    """min ||d||_inf s.t. w.(t + d) = b (or >= b) and t + d in [0, 1]; None if infeasible."""
    n = len(t)
    cost = np.r_[np.zeros(n), 1.0]
    a_ub = np.r_[np.c_[np.eye(n), -np.ones(n)], np.c_[-np.eye(n), -np.ones(n)]]
    b_ub = np.zeros(2 * n)
    bounds = [(-v, 1 - v) for v in t] + [(0, None)]
    if equality:
        res = linprog(cost, A_ub=a_ub, b_ub=b_ub, A_eq=np.r_[w, 0][None], b_eq=[b - w @ t],
                      bounds=bounds, method="highs")
    else:
        res = linprog(cost, A_ub=np.r_[a_ub, np.r_[-w, 0][None]], b_ub=np.r_[b_ub, w @ t - b],
                      bounds=bounds, method="highs")
    return res.fun if res.status == 0 else None


def test_fab_projection_is_the_linf_minimal_point_on_the_hyperplane():
    rng = np.random.default_rng(0)
    n, dim = 120, 16
    t = rng.uniform(0, 1, (n, dim))
    w = rng.normal(size=(n, dim)) * (rng.uniform(size=(n, dim)) > 0.2)
    b = np.einsum("nd,nd->n", w, t) + rng.normal(size=n) * rng.choice([0.1, 1.0, 5.0], n)
    d = project_linf_hyperplane_box(t, w, b).numpy().astype(np.float64)
    n_infeasible = 0
    for i in range(n):
        z = t[i] + d[i]
        assert z.min() >= -1e-6 and z.max() <= 1 + 1e-6
        best = _lp_min_linf(t[i], w[i], b[i])
        if best is None:  # unreachable: the box corner closest to the hyperplane
            n_infeasible += 1
            corner = np.where(w[i] * np.sign(w[i] @ t[i] - b[i]) > 0, 0.0, 1.0)
            corner = np.where(w[i] == 0, t[i], corner)
            np.testing.assert_allclose(z, corner, atol=1e-6)
            continue
        assert abs(w[i] @ z - b[i]) < 1e-3
        assert abs(np.abs(d[i]).max() - best) < 1e-4
    assert 0 < n_infeasible < n


def test_fab_t_finds_the_minimal_perturbation_of_a_linear_model():
    keras.utils.set_random_seed(0)
    x, y = H.digits()
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:H.N_TRAIN], y[:H.N_TRAIN], epochs=5, batch_size=64, verbose=0)
    w, b = [v.astype(np.float64) for v in model.layers[-1].get_weights()]
    xs, ys = H.eval_split(40)
    z = xs.reshape(len(xs), -1) @ w + b
    ok = z.argmax(1) == ys
    xs, ys, z = xs[ok], ys[ok], z[ok]
    adv = attacks.fab_t(model, xs, ys, eps=1.0, n_iter=100, n_target_classes=1).numpy()
    norm = np.abs(adv - xs).reshape(len(xs), -1).max(1)
    assert np.all(np.argmax(model.predict(adv, verbose=0), -1) != ys)
    second = np.argsort(z, 1)[:, -2]
    for i in range(len(xs)):
        t = xs[i].reshape(-1).astype(np.float64)
        lp = {k: _lp_min_linf(t, w[:, k] - w[:, ys[i]], b[ys[i]] - b[k], equality=False)
              for k in range(10) if k != ys[i]}
        untargeted = min(v for v in lp.values() if v is not None)
        assert untargeted - 1e-5 <= norm[i] <= 1.02 * lp[second[i]] + 1e-6


# --- properties -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(ATTACKS))
@settings(max_examples=3, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(eps=st.floats(0.0, 0.3), seed=st.integers(0, 2 ** 16), noise=st.booleans())
def test_adversarial_examples_stay_in_the_ball_and_box(model, data, name, eps, seed, noise):
    rng = np.random.default_rng(seed)
    x, y = data
    pick = rng.choice(len(x), 12, replace=False)
    xs, ys = x[pick], y[pick]
    if noise:  # inputs anywhere in the box, not only digit-like ones
        xs = rng.uniform(0, 1, xs.shape).astype(np.float32)
    fn, defaults = ATTACKS[name]
    kwargs = {**defaults, **QUICK[name]}
    if name != "cw_l2":
        kwargs["eps"] = eps
    adv = np.asarray(fn(model, xs, ys, **kwargs))
    assert adv.shape == xs.shape and adv.dtype == np.float32
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    if name != "cw_l2":
        assert np.abs(adv - xs).max() <= eps + 1e-6


@pytest.mark.parametrize("name", LINF)
def test_eps_zero_leaves_clean_accuracy(model, data, name):
    x, y = data[0][:60], data[1][:60]
    out = run_attack(name, model, x, y, eps=0.0, **QUICK[name])
    assert out["robust_accuracy"] == out["clean_accuracy"]


def test_run_attack_result_and_batching(model, data):
    x, y = data
    big = run_attack("fab_t", model, x, y, eps=EPS, batch_size=300, **QUICK["fab_t"])
    small = run_attack("fab_t", model, x, y, eps=EPS, batch_size=64, **QUICK["fab_t"])
    assert big["n"] == 300 and big["robust"].dtype == np.bool_ and big["robust"].shape == (300,)
    np.testing.assert_array_equal(big["robust"], small["robust"])  # deterministic: one restart
    assert big["robust_accuracy"] == pytest.approx(100 * big["robust"].mean())
    assert 0 < big["robust_accuracy"] < big["clean_accuracy"]
    clean = np.argmax(model.predict(x, verbose=0), -1) == y
    assert not np.any(big["robust"] & ~clean)
    assert big["seconds"] > 0


def test_bad_input_is_refused(model, data):
    x, y = data[0][:4], data[1][:4]
    with pytest.raises(ValueError, match="pgd20"):
        run_attack("pgd-20", model, x, y)
    with pytest.raises(ValueError, match="-0.1"):
        run_attack("pgd20", model, x, y, eps=-0.1)
    with pytest.raises(ValueError, match="n_queries"):
        run_attack("apgd_ce", model, x, y, n_queries=5)
    for fn in (attacks.pgd_restarts, attacks.apgd, attacks.apgd_targeted, attacks.fab_t,
               attacks.square, attacks.autoattack):
        with pytest.raises(ValueError, match="-0.5"):
            fn(model, x, y, eps=-0.5)


def test_attacks_run_on_the_papers_resnet():
    model = models.build("preact_resnet18", num_classes=10, input_shape=(8, 8, 3), width=4)
    x = np.random.default_rng(0).uniform(0, 1, (8, 8, 8, 3)).astype(np.float32)
    y = np.argmax(model.predict(x, verbose=0), -1)  # all clean-correct
    for name in ("pgd20", "apgd_ce"):
        out = run_attack(name, model, x, y, eps=8 / 255, return_adv=True, **QUICK[name])
        assert out["clean_accuracy"] == 100.0
        assert np.abs(out["x_adv"] - x).max() <= 8 / 255 + 1e-6


# --- transfer -------------------------------------------------------------------------------

def test_transfer_attack(model, data):
    x, y = data
    target = H.mlp_model()

    def attack(m, xb, yb):
        return attacks.pgd_restarts(m, xb, yb, eps=EPS, step_size=EPS / 4, random_start=False)
    on_itself = attacks.transfer_attack(model, model, x, y, attack)
    white_box = run_attack("pgd20", model, x, y, eps=EPS, step_size=EPS / 4, random_start=False)
    np.testing.assert_array_equal(on_itself["robust"], white_box["robust"])
    moved = attacks.transfer_attack(model, target, x, y, "pgd20", eps=EPS, batch_size=128)
    target_clean = 100 * np.mean(np.argmax(target.predict(x, verbose=0), -1) == y)
    target_white = run_attack("pgd20", target, x, y, eps=EPS)["robust_accuracy"]
    assert moved["n"] == 300 and moved["robust"].dtype == np.bool_
    # transferred examples hurt the target, but less than its own white-box attack
    assert target_white <= moved["robust_accuracy"] < target_clean
    assert moved["source_robust_accuracy"] < moved["robust_accuracy"]


def test_targeted_runs_walk_ranks_then_restarts_on_the_robust_points_only():
    from birds_tf.attacks import _common
    logits = np.array([[0.0, 3.0, 1.0, 2.0], [5.0, 1.0, 1.0, 4.0], [0.0, 1.0, 2.0, 3.0]],
                      np.float32)

    def fixed(x, training=False):  # logits read off the first pixel's index
        return tf.gather(tf.constant(logits), tf.cast(x[:, 0, 0, 0], tf.int32))
    x = tf.constant(np.arange(3, dtype=np.float32).reshape(3, 1, 1, 1))
    robust = np.array([True, True, False])
    seen = []
    for idx, restart, y_target, seed in _common.targeted_runs(fixed, x, robust, 3, 2, 7):
        seen.append((idx.tolist(), restart, y_target.numpy().tolist(), seed.numpy().tolist()))
        if len(seen) == 3:
            robust[0] = False  # the caller breaks example 0 after the third run
        if len(seen) == 5:
            robust[1] = False  # ... and example 1 after the fifth: no sixth run
    # rank 2 = runner-up (row 0: class 3; row 1: class 3, stable ties keep 1 before 2).
    assert seen == [([0, 1], 0, [3, 3], [7, 2000]), ([0, 1], 1, [3, 3], [7, 2001]),
                    ([0, 1], 0, [2, 2], [7, 3000]), ([1], 1, [2], [7, 3001]),
                    ([1], 0, [1], [7, 4000])]
