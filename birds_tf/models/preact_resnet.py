"""PreActResNet-18/50 exactly as the reference ("ResNet-18" in every table of the paper).

3x3 stem conv with no BN/ReLU/max-pool; pre-activation blocks; the 1x1 shortcut is applied to the
pre-activated input relu(bn1(x)) when the stride or width changes; final BN-ReLU-pool-linear.
"""
import keras

from birds_tf.models import common


def _basic_block(x, planes, stride, name, init):
    in_planes = x.shape[-1]
    out = keras.layers.ReLU(name=name + "_relu1")(common.bn(name + "_bn1")(x))
    if stride != 1 or in_planes != planes:
        shortcut = common.conv(planes, 1, stride, name + "_shortcut", init)(out)
    else:
        shortcut = x
    out = common.pad_conv(out, planes, stride, name + "_conv1", init)
    out = keras.layers.ReLU(name=name + "_relu2")(common.bn(name + "_bn2")(out))
    out = common.pad_conv(out, planes, 1, name + "_conv2", init)
    return keras.layers.Add(name=name + "_add")([out, shortcut])


def _bottleneck_block(x, planes, stride, name, init, expansion=4):
    in_planes = x.shape[-1]
    out = keras.layers.ReLU(name=name + "_relu1")(common.bn(name + "_bn1")(x))
    if stride != 1 or in_planes != planes * expansion:
        shortcut = common.conv(planes * expansion, 1, stride, name + "_shortcut", init)(out)
    else:
        shortcut = x
    out = common.conv(planes, 1, 1, name + "_conv1", init)(out)
    out = keras.layers.ReLU(name=name + "_relu2")(common.bn(name + "_bn2")(out))
    out = common.pad_conv(out, planes, stride, name + "_conv2", init)
    out = keras.layers.ReLU(name=name + "_relu3")(common.bn(name + "_bn3")(out))
    out = common.conv(planes * expansion, 1, 1, name + "_conv3", init)(out)
    return keras.layers.Add(name=name + "_add")([out, shortcut])


def preact_resnet(block, num_blocks, num_classes, input_shape, mean, std, widths=(64, 128, 256, 512),
                  init="torch", name="preact_resnet"):
    common.check_init(init)
    inputs, x = common.stem_input(input_shape, mean, std)
    x = common.conv(widths[0], 3, 1, "conv1", init)(x)
    for stage, (planes, blocks) in enumerate(zip(widths, num_blocks)):
        for i in range(blocks):
            stride = (1 if stage == 0 else 2) if i == 0 else 1
            x = block(x, planes, stride, f"layer{stage + 1}_{i}", init)
    x = keras.layers.ReLU(name="final_relu")(common.bn("final_bn")(x))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = common.dense(num_classes, "linear", init)(x)
    return keras.Model(inputs, outputs, name=name)


def preact_resnet18(num_classes, input_shape, mean, std, width=64, init="torch"):
    widths = tuple(int(round(width * m)) for m in (1, 2, 4, 8))
    return preact_resnet(_basic_block, (2, 2, 2, 2), num_classes, input_shape, mean, std, widths,
                         init, name="preact_resnet18")


def preact_resnet50(num_classes, input_shape, mean, std, width=64, init="torch"):
    widths = tuple(int(round(width * m)) for m in (1, 2, 4, 8))
    return preact_resnet(_bottleneck_block, (3, 4, 6, 3), num_classes, input_shape, mean, std,
                         widths, init, name="preact_resnet50")
