"""The fused BatchNormalization is Keras' layer, computed by one kernel: same outputs, moving
statistics and gradients in train and eval mode, same weights and config."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from birds_tf.layers import BatchNormalization  # noqa: E402


def _pair(channels=5):
    ours = BatchNormalization(momentum=0.9, epsilon=1e-5)
    ref = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
    rng = np.random.default_rng(0)
    for layer in (ours, ref):
        layer.build((None, 4, 4, channels))
    weights = [rng.normal(size=channels).astype("float32") + 1.0,
               rng.normal(size=channels).astype("float32"),
               rng.normal(size=channels).astype("float32"),
               rng.random(channels).astype("float32") + 0.5]
    ours.set_weights(weights)
    ref.set_weights(weights)
    return ours, ref


def _run(layer, x, training):
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        out = layer(x, training=training)
        weights = tf.reshape(tf.sin(tf.range(tf.size(out), dtype=tf.float32)), tf.shape(out))
        loss = tf.reduce_sum(tf.cast(out, tf.float32) * weights)
    grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
    return out, grads


def test_matches_keras_in_train_and_eval_mode():
    x = tf.constant(np.random.default_rng(1).normal(2.0, 3.0, (6, 4, 4, 5)).astype("float32"))
    for training in (True, False):
        ours, ref = _pair()
        out_o, grads_o = _run(ours, x, training)
        out_r, grads_r = _run(ref, x, training)
        np.testing.assert_allclose(out_o, out_r, rtol=1e-4, atol=1e-4)
        for g_o, g_r in zip(grads_o, grads_r):
            np.testing.assert_allclose(g_o, g_r, rtol=1e-3, atol=1e-4)
        for w_o, w_r in zip(ours.get_weights(), ref.get_weights()):
            np.testing.assert_allclose(w_o, w_r, rtol=1e-5, atol=1e-6)


def test_moving_statistics_by_hand():
    """moving = 0.9 * moving + 0.1 * batch statistic, with the biased variance (as Keras)."""
    ours, _ = _pair(channels=2)
    before_mean, before_var = (np.array(v) for v in ours.get_weights()[2:])
    x = np.random.default_rng(2).normal(size=(3, 2, 2, 2)).astype("float32")
    ours(tf.constant(x), training=True)
    flat = x.reshape(-1, 2)
    np.testing.assert_allclose(ours.moving_mean, 0.9 * before_mean + 0.1 * flat.mean(0),
                               rtol=1e-5)
    np.testing.assert_allclose(ours.moving_variance, 0.9 * before_var + 0.1 * flat.var(0),
                               rtol=1e-5)


def test_non_4d_input_falls_back_and_config_round_trips():
    ours = BatchNormalization(momentum=0.9, epsilon=1e-5)
    ref = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
    x = tf.constant(np.random.default_rng(3).normal(size=(7, 5)).astype("float32"))
    np.testing.assert_allclose(ours(x, training=True), ref(x, training=True), rtol=1e-5,
                               atol=1e-5)
    clone = BatchNormalization.from_config(ours.get_config())
    assert clone.momentum == 0.9 and clone.epsilon == 1e-5
    assert isinstance(clone, keras.layers.BatchNormalization)


def test_bfloat16_inputs_go_in_uncast_and_match_the_cast_path(monkeypatch):
    """Under mixed_bfloat16 the kernel takes bf16 inputs directly on CPU; outputs, gradients and
    moving statistics are the same as casting to float32 first (the previous path): bit for bit
    on CPUs with bf16 instructions (AVX512-BF16, AMX), within 1e-6 relative elsewhere (oneDNN on
    an AVX2-only CPU sums some reductions in another order: a few float32 ulps apart); and close to
    Keras' own layer."""
    from birds_tf.utils import machine
    native = bool({"avx512_bf16", "amx_bf16"} & set(machine.cpu_flags()))
    from birds_tf.layers import batch_norm
    x = tf.constant(np.random.default_rng(3).normal(2.0, 3.0, (8, 6, 6, 5)), tf.bfloat16)
    results = []
    for native in (True, False):
        monkeypatch.setattr(batch_norm, "_native_bf16", lambda inputs, n=native: n)
        for training in (True, False):
            layer = BatchNormalization(momentum=0.9, epsilon=1e-5, dtype="mixed_bfloat16")
            layer.build((None, 6, 6, 5))
            layer.set_weights(_pair()[0].get_weights())
            out, grads = _run(layer, x, training)
            assert out.dtype == tf.bfloat16
            results.append([out] + grads + layer.get_weights())
    for fast, cast in zip(results[:2], results[2:]):
        for a, b in zip(fast, cast):
            a, b = np.asarray(tf.cast(a, tf.float32)), np.asarray(tf.cast(b, tf.float32))
            if native:
                np.testing.assert_array_equal(a, b)
            else:
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=0)
    ref = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, dtype="mixed_bfloat16")
    ref.build((None, 6, 6, 5))
    ref.set_weights(_pair()[0].get_weights())
    np.testing.assert_allclose(np.asarray(tf.cast(ref(x, training=True), tf.float32)),
                               np.asarray(tf.cast(results[0][0], tf.float32)), atol=0.07)
