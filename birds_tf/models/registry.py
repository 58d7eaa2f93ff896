"""Build any architecture of the paper by name.

``build(name, num_classes=..., input_shape=...)`` is the public entry point; the per-dataset
normaliser statistics come from ``dataset=`` or explicit ``mean``/``std``.
"""
from birds_tf.models import preact_resnet, small_dense, vgg, wide_resnet

_BUILDERS = {
    "preact_resnet18": preact_resnet.preact_resnet18,
    "preact_resnet50": preact_resnet.preact_resnet50,
    "vgg16_bn": vgg.vgg16_bn,
    "wide_resnet34_10": wide_resnet.wide_resnet34_10,
    "small_dense": small_dense.small_dense,
}

# The authors' normaliser statistics (docs/authors-code.md, "PGD-AT and data").
DATASET_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "tiny_imagenet": ((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262)),
    "digits": ((0.3053,), (0.3760,)),
    "animals": ((0.2736,), (0.4056,)),
    "synthetic": ((0.5232, 0.4679, 0.4836), (0.2409, 0.2372, 0.2401)),  # data/synthetic.py
}


def names():
    return sorted(_BUILDERS)


def build(name, num_classes=10, input_shape=(32, 32, 3), dataset=None, mean=None, std=None,
          **kwargs):
    """A freshly initialised model; extra keyword arguments go to the architecture."""
    if name not in _BUILDERS:
        raise ValueError(f"Unknown architecture {name!r}; allowed: {names()}.")
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes!r}.")
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape!r}.")
    channels = input_shape[-1]
    if mean is None or std is None:
        if dataset is not None and dataset in DATASET_STATS:
            mean, std = DATASET_STATS[dataset]
        else:
            mean, std = (0.5,), (0.25,)
    if len(mean) == 1 and channels > 1:
        mean, std = tuple(mean) * channels, tuple(std) * channels
    if len(mean) != channels:
        raise ValueError(f"Normaliser has {len(mean)} channels but the input has {channels}; "
                         "pass mean/std with one value per input channel.")
    return _BUILDERS[name](int(num_classes), input_shape, mean, std, **kwargs)
