"""PGD: bounds, eps=0, a closed-form reference on a linear softmax model, and strength."""
import numpy as np
import pytest
import keras

from birds_tf.attacks import pgd_linf
from birds_tf.attacks.pgd import attack_loss


def _linear_model(d_in=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    model = keras.Sequential([keras.Input((d_in,)), keras.layers.Dense(classes)])
    w = rng.normal(size=(d_in, classes)).astype("float32")
    b = rng.normal(size=(classes,)).astype("float32")
    model.layers[0].set_weights([w, b])
    return model, w, b


def _numpy_pgd(x, y, w, b, eps, alpha, steps):
    """advertorch's LinfPGDAttack without random start, with the softmax-CE input gradient
    (W (softmax(xW+b) - onehot)) / batch in closed form."""
    delta = np.zeros_like(x, dtype=np.float64)
    onehot = np.eye(w.shape[1])[y]
    for _ in range(steps):
        z = (x + delta) @ w + b
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        grad = (p - onehot) @ w.T / len(x)
        delta = np.clip(delta + alpha * np.sign(grad), -eps, eps)
        delta = np.clip(x + delta, 0, 1) - x
    return np.clip(x + delta, 0, 1)


def test_matches_closed_form_reference_without_random_start():
    model, w, b = _linear_model()
    rng = np.random.default_rng(1)
    x = rng.random((16, 6)).astype("float32")
    y = rng.integers(0, 3, 16)
    adv = pgd_linf(model, x, y, eps=0.1, step_size=0.03, steps=7, random_start=False).numpy()
    np.testing.assert_allclose(adv, _numpy_pgd(x, y, w, b, 0.1, 0.03, 7), atol=1e-6)


@pytest.mark.parametrize("training", [False, True])
def test_stays_in_eps_ball_and_unit_box(training):
    model, _, _ = _linear_model()
    x = np.random.default_rng(2).random((32, 6)).astype("float32")
    x[:4] = 0.0
    x[4:8] = 1.0
    y = np.zeros(32, "int32")
    adv = pgd_linf(model, x, y, eps=8 / 255, step_size=2 / 255, steps=5,
                   training=training).numpy()
    assert np.all(np.abs(adv - x) <= 8 / 255 + 1e-6)
    assert adv.min() >= 0.0 and adv.max() <= 1.0


def test_eps_zero_returns_the_input():
    model, _, _ = _linear_model()
    x = np.random.default_rng(3).random((8, 6)).astype("float32")
    adv = pgd_linf(model, x, np.zeros(8, "int32"), eps=0.0, step_size=0.01, steps=3)
    np.testing.assert_array_equal(adv.numpy(), x)


def test_pgd_raises_loss_more_than_uniform_noise_on_a_trained_model():
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.data / 16.0).astype("float32")
    y = d.target.astype("int32")
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.Adam(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=20, batch_size=256, verbose=0)
    eps = 0.1
    clean = float(attack_loss(model(x), y))
    noise = np.clip(x + np.random.default_rng(0).uniform(-eps, eps, x.shape), 0, 1)
    noisy = float(attack_loss(model(noise.astype("float32")), y))
    adv = pgd_linf(model, x, y, eps=eps, step_size=eps / 4, steps=10)
    attacked = float(attack_loss(model(adv), y))
    assert attacked > noisy + 0.5 and attacked > clean + 0.5


@pytest.mark.parametrize("kwargs,match", [
    ({"eps": -0.1}, "eps must be a number >= 0.*-0.1"),
    ({"steps": 0}, "steps must be an integer >= 1, got 0"),
    ({"step_size": -1}, "step_size"),
    ({"loss": "hinge"}, "Unknown PGD loss 'hinge'"),
])
def test_bad_attack_settings_are_refused(kwargs, match):
    model, _, _ = _linear_model()
    args = dict(eps=0.1, step_size=0.01, steps=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        pgd_linf(model, np.zeros((1, 6), "float32"), np.zeros(1, "int32"), **args)
