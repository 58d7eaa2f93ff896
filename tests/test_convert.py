"""``birds_tf.sparsify``: masks added to plain layers; already-masked layers keep their masks."""
import keras
import numpy as np

import birds_tf
from birds_tf.layers import MaskedConv2D, MaskedDense


def _plain():
    inp = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(3, 3, name="conv")(inp)
    x = keras.layers.Flatten()(x)
    return keras.Model(inp, keras.layers.Dense(4, name="fc")(x))


def test_sparsify_twice_keeps_masks_and_weights():
    once = birds_tf.sparsify(_plain())
    conv = once.get_layer("conv")
    mask = np.ones(conv.mask.shape, np.float32)
    mask[0, 0] = 0
    conv.mask.assign(mask)
    x = np.random.default_rng(0).random((2, 6, 6, 2), dtype=np.float32)
    twice = birds_tf.sparsify(once)  # raised a raw Keras set_weights error before
    assert isinstance(twice.get_layer("conv"), MaskedConv2D)
    assert isinstance(twice.get_layer("fc"), MaskedDense)
    np.testing.assert_array_equal(twice.get_layer("conv").mask.numpy(), mask)
    np.testing.assert_array_equal(twice.get_layer("conv").kernel.numpy(), conv.kernel.numpy())
    np.testing.assert_allclose(twice(x), once(x), rtol=1e-6)


def test_sparsify_partly_masked_model():
    inp = keras.Input((6, 6, 2))
    x = MaskedConv2D(3, 3, name="conv")(inp)
    x = keras.layers.Flatten()(x)
    net = keras.Model(inp, keras.layers.Dense(4, name="fc")(x))
    mask = np.zeros(net.get_layer("conv").mask.shape, np.float32)
    mask[1] = 1
    net.get_layer("conv").mask.assign(mask)
    out = birds_tf.sparsify(net)
    np.testing.assert_array_equal(out.get_layer("conv").mask.numpy(), mask)
    np.testing.assert_array_equal(out.get_layer("fc").mask.numpy(), 1.0)
    np.testing.assert_array_equal(out.get_layer("fc").kernel.numpy(),
                                  net.get_layer("fc").kernel.numpy())
