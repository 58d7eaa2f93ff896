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


def stratified_split(images, labels):
    """The embedded datasets' fixed stratified 60/20/20 train/val/test split (seed 0), as
    ``((x_train, y_train), (x_val, y_val), (x_test, y_test))``."""
    from sklearn.model_selection import train_test_split

    x_rest, x_test, y_rest, y_test = train_test_split(
        images, labels, test_size=0.2, stratify=labels, random_state=0)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=0.25, stratify=y_rest, random_state=0)
    return (x_train, y_train), (x_val, y_val), (x_test, y_test)


def from_arrays(train, val, test, **fields):
    """A `Source` over in-memory ``(x, y)`` splits."""
    ds = tf.data.Dataset.from_tensor_slices
    return Source(train=ds(train), val=ds(val), test=ds(test), num_train=len(train[1]),
                  num_val=len(val[1]), num_test=len(test[1]), **fields)
