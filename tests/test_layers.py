"""Masked layers: forward equals the plain layer with kernel*mask, gradients, serialization."""
import numpy as np
import pytest
import keras
import tensorflow as tf

from birds_tf.layers import MaskedConv2D, MaskedDense
from birds_tf.layers.masked import reuse_effective_kernels
from birds_tf.sparsity import masks


def _random_mask(shape, density, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random(shape) < density).astype("float32")


def test_conv_forward_equals_plain_conv_with_masked_kernel():
    x = np.random.default_rng(1).random((2, 6, 6, 3)).astype("float32")
    layer = MaskedConv2D(4, 3, padding="same", use_bias=True)
    layer(x)
    mask = _random_mask(layer.kernel.shape, 0.5)
    masks.set_mask(layer, mask, zero_kernel=False)
    plain = keras.layers.Conv2D(4, 3, padding="same", use_bias=True)
    plain(x)
    plain.set_weights([layer.kernel.numpy() * mask, layer.bias.numpy()])
    np.testing.assert_allclose(layer(x), plain(x), rtol=1e-5, atol=1e-6)


def test_dense_forward_equals_plain_dense_with_masked_kernel():
    x = np.random.default_rng(2).random((3, 5)).astype("float32")
    layer = MaskedDense(4)
    layer(x)
    mask = _random_mask(layer.kernel.shape, 0.3)
    masks.set_mask(layer, mask, zero_kernel=False)
    expected = x @ (layer.kernel.numpy() * mask) + layer.bias.numpy()
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
def test_reused_effective_kernels_are_computed_once_and_equal_the_layers(dtype):
    """Inside the context a layer uses the product taken on entry (a mask changed later is not
    seen there), bit-identical to its own, in its compute dtype; outside, the new mask applies."""
    x = np.random.default_rng(3).random((2, 6, 6, 3)).astype("float32")
    net = keras.Sequential([keras.Input((6, 6, 3)),
                            MaskedConv2D(4, 3, padding="same", dtype=dtype),
                            keras.layers.Flatten(), MaskedDense(2, dtype=dtype)])
    for layer in (net.layers[0], net.layers[2]):
        masks.set_mask(layer, _random_mask(layer.kernel.shape, 0.5), zero_kernel=False)
    expected = np.asarray(net(x), np.float32)
    with reuse_effective_kernels(net):
        np.testing.assert_array_equal(np.asarray(net(x), np.float32), expected)
        masks.set_mask(net.layers[0], np.zeros(net.layers[0].kernel.shape, "float32"),
                       zero_kernel=False)
        np.testing.assert_array_equal(np.asarray(net(x), np.float32), expected)
    assert not np.allclose(np.asarray(net(x), np.float32), expected)
    with reuse_effective_kernels(lambda t: t):  # a plain function: nothing to reuse
        pass


@pytest.mark.parametrize("layer_fn,shape", [(lambda: MaskedConv2D(3, 3), (2, 5, 5, 2)),
                                            (lambda: MaskedDense(3), (2, 4))])
def test_kernel_gradient_is_zero_at_pruned_positions(layer_fn, shape):
    layer = layer_fn()
    x = tf.random.uniform(shape)
    layer(x)
    mask = _random_mask(layer.kernel.shape, 0.5, seed=3)
    masks.set_mask(layer, mask, zero_kernel=False)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) ** 2)
    grad = tape.gradient(loss, layer.kernel.value).numpy()
    assert np.all(grad[mask == 0] == 0)
    assert np.any(grad[mask == 1] != 0)


def test_mask_is_non_trainable_and_only_first_replica():
    layer = MaskedDense(2)
    layer(np.zeros((1, 3), "float32"))
    assert all(w is not layer.mask for w in layer.trainable_weights)
    assert any(w is layer.mask for w in layer.non_trainable_weights)
    assert layer.mask.aggregation == "only_first_replica"


def test_torch_default_init_bounds():
    layer = MaskedConv2D(8, 3, use_bias=True)
    layer(np.zeros((1, 4, 4, 16), "float32"))
    bound = 1 / np.sqrt(3 * 3 * 16)
    assert np.abs(layer.kernel.numpy()).max() <= bound + 1e-7
    assert np.abs(layer.kernel.numpy()).max() > 0.8 * bound  # uniform, not something narrower
    assert np.abs(layer.bias.numpy()).max() <= bound + 1e-7


def test_keras_saving_round_trip_keeps_masks(tmp_path):
    inputs = keras.Input((6, 6, 1))
    x = MaskedConv2D(2, 3, name="c")(inputs)
    x = keras.layers.Flatten()(x)
    outputs = MaskedDense(3, name="d")(x)
    model = keras.Model(inputs, outputs)
    for layer in masks.masked_layers(model):
        masks.set_mask(layer, _random_mask(layer.kernel.shape, 0.4, seed=len(layer.name)))
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    for name, mask in masks.get_masks(model).items():
        np.testing.assert_array_equal(masks.get_masks(loaded)[name], mask)
    x = np.random.default_rng(0).random((2, 6, 6, 1)).astype("float32")
    np.testing.assert_allclose(model(x), loaded(x), rtol=1e-6)
    assert isinstance(loaded.get_layer("c"), MaskedConv2D)


def test_config_round_trip():
    layer = MaskedConv2D(4, 3, strides=2, padding="valid", name="x")
    clone = MaskedConv2D.from_config(layer.get_config())
    assert clone.filters == 4 and clone.strides == (2, 2) and clone.padding == "valid"
    assert clone.get_config()["kernel_initializer"] == "torch_default"


def test_density_helpers_and_zeroing():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, MaskedDense(5, name="a")(MaskedDense(5, name="b")(inputs)))
    layer_a = model.get_layer("a")
    mask = np.zeros((5, 5), "float32")
    mask[:2] = 1
    masks.set_mask(layer_a, mask)
    assert masks.densities(model)["a"] == pytest.approx(0.4)
    assert masks.densities(model)["b"] == 1.0
    assert masks.global_density(model) == pytest.approx((10 + 20) / (25 + 20))
    assert np.all(layer_a.kernel.numpy()[2:] == 0)
    assert masks.count_active(model) == {"b": 20, "a": 10}


def test_bad_masks_are_refused_with_the_value():
    layer = MaskedDense(3)
    layer(np.zeros((1, 2), "float32"))
    with pytest.raises(ValueError, match=r"shape \(3, 2\).*kernel has shape \(2, 3\)"):
        masks.set_mask(layer, np.ones((3, 2)))
    bad = np.ones((2, 3))
    bad[0, 0] = 0.5
    with pytest.raises(ValueError, match=r"values \[0.5\].*only 0 and 1"):
        masks.set_mask(layer, bad)
    model = keras.Sequential([keras.Input((2,)), layer])
    with pytest.raises(ValueError, match="No masked layer named"):
        masks.set_masks(model, {"nope": np.ones((2, 3))})


@pytest.mark.parametrize("value", [0, -0.1, 1.5, "x", float("nan")])
def test_density_outside_unit_interval_is_refused(value):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        masks.validate_density(value)
