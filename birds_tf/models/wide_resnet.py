"""WRN-34-10 as the reference (the TRADES-style WideResNet, dropout 0).

Channels [16, 16k, 32k, 64k] with k = 10, 5 pre-activation blocks per stage; a 1x1 shortcut on
the pre-activated input when widths differ; final BN-ReLU, average pool, Linear with zero bias.
Convs use kaiming-normal (fan_out, relu) as WRN does, unless ``init="keras"``. The reference's
``avg_pool2d(8)`` is a global pool at 32x32; a global pool keeps 64x64 inputs working.
"""
import keras

from birds_tf.models import common


def _block(x, planes, stride, name, init):
    kinit = "kaiming_normal_fan_out"
    equal = x.shape[-1] == planes
    act = keras.layers.ReLU(name=name + "_relu1")(common.bn(name + "_bn1")(x))
    out = common.pad_conv(act, planes, stride, name + "_conv1", init, kernel_init=kinit)
    out = keras.layers.ReLU(name=name + "_relu2")(common.bn(name + "_bn2")(out))
    out = common.pad_conv(out, planes, 1, name + "_conv2", init, kernel_init=kinit)
    if equal:
        shortcut = x
    else:
        shortcut = common.conv(planes, 1, stride, name + "_shortcut", init, kernel_init=kinit)(act)
    return keras.layers.Add(name=name + "_add")([shortcut, out])


def wide_resnet(depth, widen, num_classes, input_shape, mean, std, init="torch", width=16):
    common.check_init(init)
    if (depth - 4) % 6:
        raise ValueError(f"WideResNet depth must be 6n+4, got {depth}.")
    n = (depth - 4) // 6
    channels = (width, width * widen, 2 * width * widen, 4 * width * widen)
    inputs, x = common.stem_input(input_shape, mean, std)
    x = common.conv(channels[0], 3, 1, "conv1", init, kernel_init="kaiming_normal_fan_out")(x)
    for stage in range(3):
        for i in range(n):
            stride = (1 if stage == 0 else 2) if i == 0 else 1
            x = _block(x, channels[stage + 1], stride, f"block{stage + 1}_{i}", init)
    x = keras.layers.ReLU(name="final_relu")(common.bn("final_bn")(x))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = common.dense(num_classes, "fc", init, bias_init="zeros")(x)
    return keras.Model(inputs, outputs, name=f"wide_resnet{depth}_{widen}")


def wide_resnet34_10(num_classes, input_shape, mean, std, width=16, init="torch"):
    return wide_resnet(34, 10, num_classes, input_shape, mean, std, init=init, width=width)
