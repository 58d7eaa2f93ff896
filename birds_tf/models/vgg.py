"""VGG-16 with BatchNorm, as the reference's ``vgg16_bn``.

Each conv is 3x3 (padding 1, with bias) + BN + ReLU; 'M' is 2x2 max-pooling; then a single
Linear(512, C). The reference flattens (CIFAR only); global average pooling is identical at
32x32 (a 1x1 map) and lets 64x64 inputs work too. Pooling pads "same", identical on the even
sizes of CIFAR/Tiny-ImageNet, so the tiny 8x8 digits still run through all five pools.
"""
import keras

from birds_tf.models import common

CFG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def vgg16_bn(num_classes, input_shape, mean, std, width=64, init="torch"):
    common.check_init(init)
    scale = width / 64.0
    inputs, x = common.stem_input(input_shape, mean, std)
    conv_i = pool_i = 0
    for v in CFG16:
        if v == "M":
            pool_i += 1
            x = keras.layers.MaxPooling2D(2, padding="same", name=f"pool{pool_i}")(x)
            continue
        conv_i += 1
        x = common.conv(int(round(v * scale)), 3, 1, f"conv{conv_i}", init, use_bias=True)(x)
        x = keras.layers.ReLU(name=f"relu{conv_i}")(common.bn(f"bn{conv_i}")(x))
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = common.dense(num_classes, "classifier", init)(x)
    return keras.Model(inputs, outputs, name="vgg16_bn")
