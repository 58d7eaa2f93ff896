"""The model zoo: exact parameter counts of the reference, shapes, inits and the registry."""
import numpy as np
import pytest
import keras

from birds_tf import models
from birds_tf.layers import MaskedConv2D, MaskedDense
from birds_tf.models import small_dense
from birds_tf.sparsity import masks
from conftest import mirrored


def _counts(model):
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    masked = sum(int(np.prod(layer.kernel.shape)) for layer in masks.masked_layers(model))
    return trainable, masked


def test_preact_resnet18_matches_reference_counts():
    model = models.build("preact_resnet18", num_classes=10, input_shape=(32, 32, 3),
                         dataset="cifar10")
    assert _counts(model) == (11_172_170, 11_164_352)
    # 17 3x3 convs + 3 shortcuts + the linear layer.
    assert len(masks.masked_layers(model)) == 21


# Hand counts: conv/linear kernels, plus BN gamma/beta and biases.
@pytest.mark.parametrize("name,trainable,masked", [
    ("preact_resnet50", 23_513_162, 23_467_712),
    ("vgg16_bn", 14_728_266, 14_715_584),
    ("wide_resnet34_10", 46_160_474, 46_138_032),
])
def test_other_architecture_counts(name, trainable, masked):
    model = models.build(name, num_classes=10, input_shape=(32, 32, 3))
    assert _counts(model) == (trainable, masked)


def test_vgg16_hand_count():
    cfg = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    cin, kernels, extra = 3, 0, 0
    for c in cfg:
        kernels += 9 * cin * c
        extra += c + 2 * c  # conv bias, BN gamma and beta
        cin = c
    kernels += 512 * 10
    extra += 10
    model = models.build("vgg16_bn", num_classes=10, input_shape=(32, 32, 3))
    assert _counts(model) == (kernels + extra, kernels)


def test_every_conv_and_dense_is_masked_and_bn_matches_pytorch():
    model = models.build("preact_resnet18", num_classes=10, input_shape=(32, 32, 3), width=8)
    for layer in model.layers:
        if "Conv" in type(layer).__name__:
            assert isinstance(layer, MaskedConv2D), layer.name
        if "Dense" in type(layer).__name__:
            assert isinstance(layer, MaskedDense), layer.name
        if "BatchNormalization" in type(layer).__name__:
            assert layer.momentum == 0.9 and layer.epsilon == 1e-5
    assert model.layers[1].name == "normalize"


def test_preact_structure_stem_and_shortcut_on_preactivation():
    model = models.build("preact_resnet18", num_classes=10, input_shape=(32, 32, 3), width=8)
    stem = model.get_layer("conv1")
    assert stem.kernel.shape == (3, 3, 3, 8) and not stem.use_bias
    # The stem feeds the first block's BN directly: no BN/ReLU/pool after it.
    consumers = [n.operation.name for n in stem._outbound_nodes]
    assert consumers and all("layer1_0" in c for c in consumers)
    shortcut = model.get_layer("layer2_0_shortcut")
    assert shortcut.kernel.shape[:2] == (1, 1)
    assert shortcut._inbound_nodes[0].parent_nodes[0].operation.name == "layer2_0_relu1"


@pytest.mark.parametrize("name", models.names())
@pytest.mark.parametrize("shape,classes", [((32, 32, 3), 10), ((64, 64, 3), 200),
                                           ((32, 32, 1), 7)])
def test_models_run_on_32_and_64_pixel_inputs(name, shape, classes):
    kwargs = {"width": 4} if name != "small_dense" else {"density": 0.05}
    if name == "wide_resnet34_10":
        kwargs = {"width": 2}
    model = models.build(name, num_classes=classes, input_shape=shape, **kwargs)
    out = model(np.zeros((2,) + shape, "float32"), training=False)
    assert out.shape == (2, classes)


def test_small_dense_matches_target_density():
    dense = sum(int(np.prod(layer.kernel.shape)) for layer in masks.masked_layers(
        models.build("preact_resnet18", 10, (32, 32, 3))))
    for density in (0.05, 0.1, 0.2, 0.3):
        model = models.build("small_dense", 10, (32, 32, 3), density=density)
        _, masked = _counts(model)
        assert abs(masked / dense - density) / density < 0.02
    # The reference's hand-picked planes for density 0.2.
    assert small_dense.widths_for_density(0.2) == (29, 57, 115, 229)


def test_torch_init_is_default_and_keras_is_an_option():
    torch_model = models.build("preact_resnet18", 10, (32, 32, 3), width=8)
    keras_model = models.build("preact_resnet18", 10, (32, 32, 3), width=8, init="keras")
    fan_in = 9 * 8
    bound = 1 / np.sqrt(fan_in)
    w_torch = torch_model.get_layer("layer1_0_conv1").kernel.numpy()
    w_keras = keras_model.get_layer("layer1_0_conv1").kernel.numpy()
    assert np.abs(w_torch).max() <= bound + 1e-7
    assert np.abs(w_keras).max() > bound  # Glorot's bound sqrt(6/(72+72)) is wider
    wrn = models.build("wide_resnet34_10", 10, (32, 32, 3), width=2)
    assert np.allclose(wrn.get_layer("fc").bias.numpy(), 0)
    fan_out = 9 * wrn.get_layer("block1_0_conv1").filters
    std = wrn.get_layer("block1_0_conv1").kernel.numpy().std()
    assert abs(std - np.sqrt(2 / fan_out)) / np.sqrt(2 / fan_out) < 0.15


def test_bad_builds_name_the_value():
    with pytest.raises(ValueError, match=r"Unknown architecture 'resnet9'.*preact_resnet18"):
        models.build("resnet9")
    with pytest.raises(ValueError, match="Unknown init scheme 'xavier'"):
        models.build("preact_resnet18", init="xavier")
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        models.build("small_dense", density=1.5)
    with pytest.raises(ValueError, match="num_classes"):
        models.build("vgg16_bn", num_classes=1)


def test_builds_and_steps_under_mirrored_strategy(two_cpus):
    from birds_tf.training.optimizer import TorchSGD
    strategy = mirrored(two_cpus)
    with strategy.scope():
        model = models.build("preact_resnet18", 10, (8, 8, 3), width=4)
        model.compile(optimizer=TorchSGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=False)
    x = np.random.default_rng(0).random((8, 8, 8, 3)).astype("float32")
    y = np.arange(8) % 10
    before = model.get_layer("linear").kernel.numpy().copy()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert not np.allclose(before, model.get_layer("linear").kernel.numpy())
