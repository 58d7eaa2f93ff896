"""Pruning-at-init scores against closed forms on a linear network, and the prune loop."""
import keras
import numpy as np
import pytest

from birds_tf.layers import MaskedConv2D, MaskedDense
from birds_tf.sparsity import masks as masks_lib
from birds_tf.sparsity import scorers

W1 = np.array([[0.5, -1.0, 0.25, 0.8],
               [-0.3, 0.7, -0.9, 0.1],
               [1.2, -0.4, 0.6, -0.75]], dtype=np.float32)
W2 = np.array([[0.9, -0.2],
               [-0.6, 0.45],
               [0.3, -1.1],
               [-0.5, 0.65]], dtype=np.float32)
X1 = np.array([[1.0, 2.0, -1.0], [0.5, -0.3, 0.8], [-1.5, 0.2, 0.4]], dtype=np.float32)
Y1 = np.array([0, 1, 1])
X2 = np.array([[0.3, -0.7, 1.1], [2.0, 0.1, -0.6]], dtype=np.float32)
Y2 = np.array([1, 0])
BATCHES = [(X1, Y1), (X2, Y2)]


def linear_net(mask1=None):
    inp = keras.Input((3,))
    h = MaskedDense(4, use_bias=False, name="l1")(inp)
    out = MaskedDense(2, use_bias=False, name="l2")(h)
    model = keras.Model(inp, out)
    model.get_layer("l1").kernel.assign(W1)
    model.get_layer("l2").kernel.assign(W2)
    if mask1 is not None:
        masks_lib.set_masks(model, {"l1": mask1})
    return model


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def onehot(y):
    return np.eye(2)[y]


def grads(x, y, w1, w2, t=1.0):
    """dL/dW1, dL/dW2 of mean CE(softmax(x w1 w2 / t)) and the pieces GraSP's HVP needs."""
    z = x @ w1 @ w2 / t
    p = softmax(z)
    g = (p - onehot(y)) / len(x)
    return x.T @ g @ w2.T / t, w1.T @ x.T @ g / t, p, g


def test_synflow_closed_form():
    s = scorers.synflow_scores(linear_net())
    a1, a2 = np.abs(W1), np.abs(W2)
    # R = 1^T |W1| |W2| 1  =>  dR/dW1 = 1 (|W2| 1)^T, dR/dW2 = (1^T |W1|)^T 1^T.
    want1 = a1 * np.outer(np.ones(3), a2.sum(1))
    want2 = a2 * np.outer(a1.sum(0), np.ones(2))
    np.testing.assert_allclose(s["l1"], want1, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(s["l2"], want2, atol=1e-5, rtol=1e-5)


def test_snip_closed_form_sums_batches_before_abs():
    s = scorers.snip_scores(linear_net(), BATCHES)
    g1 = g2 = 0
    for x, y in BATCHES:
        a, b, _, _ = grads(x, y, W1, W2)
        g1, g2 = g1 + a, g2 + b
    s1, s2 = np.abs(g1 * W1), np.abs(g2 * W2)
    norm = s1.sum() + s2.sum()
    np.testing.assert_allclose(s["l1"], s1 / norm, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(s["l2"], s2 / norm, atol=1e-5, rtol=1e-5)


def test_snip_pruned_positions_score_zero_even_if_kernel_not_zeroed():
    mask1 = np.ones((3, 4), np.float32)
    mask1[0, 1] = mask1[2, 3] = 0
    model = linear_net()
    masks_lib.set_masks(model, {"l1": mask1}, zero_kernel=False)
    s = scorers.snip_scores(model, BATCHES)
    assert s["l1"][0, 1] == 0 and s["l1"][2, 3] == 0
    # Active positions: |g_eff * W| with g_eff the gradient of the masked network.
    w1 = W1 * mask1
    g1 = sum(grads(x, y, w1, W2)[0] for x, y in BATCHES)
    g2 = sum(grads(x, y, w1, W2)[1] for x, y in BATCHES)
    s1, s2 = np.abs(g1 * w1), np.abs(g2 * W2)
    np.testing.assert_allclose(s["l1"], s1 / (s1.sum() + s2.sum()), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 200.0])
def test_grasp_closed_form(temperature):
    t = temperature
    s = scorers.grasp_scores(linear_net(), BATCHES, temperature=t)
    v1 = v2 = 0
    for x, y in BATCHES:
        a, b, _, _ = grads(x, y, W1, W2, t)
        v1, v2 = v1 + a, v2 + b
    # Hessian-vector product along v = (v1, v2), by differentiating the gradient formulas.
    h1 = h2 = 0
    for x, y in BATCHES:
        _, _, p, g = grads(x, y, W1, W2, t)
        dz = x @ (v1 @ W2 + W1 @ v2) / t
        dp = p * dz - p * (p * dz).sum(1, keepdims=True)
        dg = dp / len(x)
        h1 = h1 + (x.T @ dg @ W2.T + x.T @ g @ v2.T) / t
        h2 = h2 + (v1.T @ x.T @ g + W1.T @ x.T @ dg) / t
    s1, s2 = h1 * W1, h2 * W2
    norm = abs(s1.sum() + s2.sum()) + 1e-10
    scale = max(np.abs(s1 / norm).max(), np.abs(s2 / norm).max())
    np.testing.assert_allclose(s["l1"] / scale, s1 / norm / scale, atol=1e-5)
    np.testing.assert_allclose(s["l2"] / scale, s2 / norm / scale, atol=1e-5)


def test_magnitude_and_random_scores():
    mask1 = np.ones((3, 4), np.float32)
    mask1[1, 2] = 0
    model = linear_net(mask1)
    s = scorers.magnitude_scores(model)
    np.testing.assert_allclose(s["l1"], np.abs(W1 * mask1))
    r1, r2 = scorers.random_scores(model, seed=5), scorers.random_scores(model, seed=5)
    np.testing.assert_array_equal(r1["l1"], r2["l1"])
    assert not np.array_equal(r1["l1"], scorers.random_scores(model, seed=6)["l1"])


def small_convnet(live_bn=False):
    """Conv-BN-ReLU-conv-pool-dense; with random BN parameters some ReLU channels are dead."""
    inp = keras.Input((8, 8, 3))
    x = MaskedConv2D(8, 3, padding="same", use_bias=False, name="c1")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = MaskedConv2D(8, 3, padding="same", use_bias=False, name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = MaskedDense(4, name="fc")(x)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    bn = model.get_layer("bn")
    bn.moving_mean.assign(rng.normal(size=8).astype(np.float32))
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, 8).astype(np.float32))
    bn.gamma.assign(rng.normal(size=8).astype(np.float32))
    bn.beta.assign(rng.normal(size=8).astype(np.float32))
    if live_bn:  # every channel active, so no score is tied at zero
        bn.moving_mean.assign(np.zeros(8, np.float32))
        bn.gamma.assign(np.ones(8, np.float32))
        bn.beta.assign(np.full(8, 5.0, np.float32))
    return model


def test_synflow_restores_weights_and_bn_stats_and_uses_abs_everything():
    model = small_convnet()
    before = [np.array(v.numpy()) for v in model.variables]
    s = scorers.synflow_scores(model)
    for v, b in zip(model.variables, before):
        np.testing.assert_array_equal(v.numpy(), b)
    # Same scores from an explicitly |.|-ed twin, differentiated by hand with a tape.
    import tensorflow as tf
    twin = small_convnet()
    for v, b in zip(twin.variables, before):
        v.assign(np.abs(b) if "mask" not in v.path else b)
    kernels = [twin.get_layer(n).kernel.value for n in ("c1", "c2", "fc")]
    with tf.GradientTape() as tape:
        r = tf.reduce_sum(twin(tf.ones((1, 8, 8, 3)), training=False))
    for n, g, k in zip(("c1", "c2", "fc"), tape.gradient(r, kernels), kernels):
        np.testing.assert_allclose(s[n], np.abs(g.numpy() * k.numpy()), rtol=1e-4, atol=1e-6)


def _kept(model):
    return sum(int(m.sum()) for m in masks_lib.get_masks(model).values())


@pytest.mark.parametrize("scorer,rounds", [("magnitude", 3), ("snip", 1), ("random", 2),
                                           ("synflow", 4), ("grasp", 1)])
def test_prune_at_init_keeps_global_count(scorer, rounds):
    model = small_convnet(live_bn=True)
    n = sum(m.size for m in masks_lib.get_masks(model).values())
    rng = np.random.default_rng(1)
    batches = [(rng.random((4, 8, 8, 3), dtype=np.float32), rng.integers(0, 4, 4))]
    out = scorers.prune_at_init(model, 0.3, scorer, batches=batches, rounds=rounds)
    assert _kept(model) == n - int(0.7 * n)
    assert out.keys() == {"c1", "c2", "fc"}
    for layer in masks_lib.masked_layers(model):
        assert not layer.kernel.numpy()[layer.mask.numpy() == 0].any()


def test_prune_at_init_prunes_all_ties_at_the_threshold():
    # A dead ReLU channel gives its fan-in and fan-out zero GraSP scores; when the k-th smallest
    # score is one of those zeros, the reference rule (keep score > threshold) prunes them all.
    model = small_convnet()
    n = sum(m.size for m in masks_lib.get_masks(model).values())
    rng = np.random.default_rng(1)
    batches = [(rng.random((4, 8, 8, 3), dtype=np.float32), rng.integers(0, 4, 4))]
    scores = scorers.grasp_scores(model, batches)
    flat = np.concatenate([v.ravel() for v in scores.values()])
    threshold = np.sort(flat)[int(0.7 * n) - 1]
    scorers.prune_at_init(model, 0.3, "grasp", batches=batches)
    assert _kept(model) == int((flat > threshold).sum()) <= n - int(0.7 * n)


def test_prune_at_init_is_monotone_and_matches_one_shot_for_magnitude():
    a, b = small_convnet(), small_convnet()
    b.set_weights(a.get_weights())
    one = scorers.prune_at_init(a, 0.25, "magnitude", rounds=1)
    many = scorers.prune_at_init(b, 0.25, "magnitude", rounds=5, schedule="linear")
    for n in one:
        np.testing.assert_array_equal(one[n], many[n])


def test_prune_at_init_errors():
    model = linear_net()
    with pytest.raises(ValueError, match="'nope'.*snip"):
        scorers.prune_at_init(model, 0.5, "nope")
    with pytest.raises(ValueError, match="rounds.*0"):
        scorers.prune_at_init(model, 0.5, "magnitude", rounds=0)
    with pytest.raises(ValueError, match="1.5"):
        scorers.prune_at_init(model, 1.5, "magnitude")
    with pytest.raises(ValueError, match="0"):
        scorers.prune_at_init(model, 0, "magnitude")
    with pytest.raises(ValueError, match="'cosine'"):
        scorers.prune_at_init(model, 0.5, "magnitude", schedule="cosine")
    with pytest.raises(ValueError, match="snip"):
        scorers.prune_at_init(model, 0.5, "snip")


def test_synflow_on_shape_that_crashes_onednn_at_batch_one():
    # TF 2.21's oneDNN conv backprop corrupts the heap for a batch of one through a 1x1
    # stride-2 conv on 32x32 inputs with few channels; synflow_scores must not go there.
    inp = keras.Input((32, 32, 4))
    x = MaskedConv2D(8, 1, strides=2, use_bias=False, name="short")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, MaskedDense(2, use_bias=False, name="head")(x))
    s = scorers.synflow_scores(model)
    k1 = np.abs(model.get_layer("short").kernel.numpy())[0, 0]
    k2 = np.abs(model.get_layer("head").kernel.numpy())
    # Every pooled pixel equals 1^T |k1|, so R = 1^T |k1| |k2| 1 as in the linear case.
    np.testing.assert_allclose(s["short"][0, 0], k1 * k2.sum(1)[None, :], rtol=1e-5)
    np.testing.assert_allclose(s["head"], k2 * k1.sum(0)[:, None], rtol=1e-5)
