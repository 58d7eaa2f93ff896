"""Building blocks shared by the architectures: PyTorch-default BN and masked conv/dense."""
import contextlib

import keras

from birds_tf.layers import BatchNormalization, Conv2D, MaskedConv2D, MaskedDense, Normalize

# PyTorch BatchNorm2d(momentum=0.1, eps=1e-5) in Keras terms.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

INIT_SCHEMES = ("torch", "keras")

_MASKED = [True]


@contextlib.contextmanager
def layer_kind(masked=True):
    """Build with plain ``Conv2D``/``Dense`` instead of the masked twins (benchmarks measure the
    masks' overhead against exactly the same architecture)."""
    _MASKED.append(bool(masked))
    try:
        yield
    finally:
        _MASKED.pop()


def check_init(init):
    if init not in INIT_SCHEMES:
        raise ValueError(f"Unknown init scheme {init!r}; allowed: {INIT_SCHEMES}.")


def bn(name):
    return BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


def conv(filters, kernel_size, stride, name, init="torch", use_bias=False,
         kernel_init="torch_default", padding=None):
    kinit = kernel_init if init == "torch" else "keras_default"
    binit = "torch_default" if init == "torch" else "zeros"
    if padding is None:
        padding = "same" if kernel_size > 1 else "valid"
    if not _MASKED[-1]:
        return Conv2D(filters, kernel_size, strides=stride, padding=padding, use_bias=use_bias,
                      name=name)
    return MaskedConv2D(filters, kernel_size, strides=stride, padding=padding,
                        use_bias=use_bias, kernel_initializer=kinit, bias_initializer=binit,
                        name=name)


def dense(units, name, init="torch", bias_init=None):
    kinit = "torch_default" if init == "torch" else "keras_default"
    binit = bias_init or ("torch_default" if init == "torch" else "zeros")
    if not _MASKED[-1]:
        return keras.layers.Dense(units, name=name)
    return MaskedDense(units, kernel_initializer=kinit, bias_initializer=binit, name=name)


def stem_input(input_shape, mean, std):
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    # float32 under mixed precision too, as torch.autocast leaves (x - mean) / std in fp32: the
    # PGD perturbation (steps of 2/255) is added and standardised before any bf16/fp16 rounding.
    return inputs, Normalize(mean, std, name="normalize", dtype="float32")(inputs)


def pad_conv(x, filters, stride, name, init="torch", use_bias=False, kernel_init="torch_default"):
    """3x3 conv with PyTorch's symmetric padding=1 (Keras 'same' pads asymmetrically at stride 2)."""
    if stride == 1:
        return conv(filters, 3, 1, name, init, use_bias, kernel_init)(x)
    x = keras.layers.ZeroPadding2D(1, name=name + "_pad")(x)
    return conv(filters, 3, stride, name, init, use_bias, kernel_init, padding="valid")(x)
