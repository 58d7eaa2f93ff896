"""What a dataset loader hands to the shared pipeline.

Loaders only know where examples live and which augmentation the reference used; batching,
shuffling, capping and pixel scaling are the same for every dataset and live in `pipeline.py`.
Keeping the raw element cheap (an encoded path for Tiny-ImageNet, a uint8 image for CIFAR) lets the
pipeline shuffle and cap before any decoding work.
"""
import dataclasses
from typing import Callable, Optional

import tensorflow as tf


@dataclasses.dataclass(frozen=True, eq=False)
class Source:
    """Unbatched, unshuffled splits in their fixed order, and how to decode and augment them.

    Elements are `(image, label)` after `decode` (identity when None); images are uint8 in
    [0, 255] or float32 already in [0, 1], NHWC without the batch axis.
    """
    train: tf.data.Dataset
    val: tf.data.Dataset
    test: tf.data.Dataset
    num_train: int
    num_val: int
    num_test: int
    num_classes: int
    input_shape: tuple
    mean: tuple
    std: tuple
    pad: int
    flip: bool
    rotate_degrees: float = 0.0
    decode: Optional[Callable] = None
