"""scikit-learn's 8x8 digits: a real image dataset that ships with a dependency.

It needs no download, so smoke runs, tests and CI exercise the full training and evaluation path
(augmentation, robust-gap evaluation, checkpoints) on any machine in seconds. The 60/20/20 split is
stratified and fixed (`random_state=0`) so that every run sees the same images.
"""
import numpy as np
import tensorflow as tf

from birds_tf.data.source import Source

# Pixel mean/std of the fixed training split (1077 images, values k/16); a test recomputes them.
MEAN = (0.3053,)
STD = (0.3760,)
NUM_CLASSES = 10
INPUT_SHAPE = (8, 8, 1)


def fixed_split():
    """((x_train, y_train), (x_val, y_val), (x_test, y_test)); x float32 (N, 8, 8, 1) in [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images.astype(np.float32) / 16.0)[..., None]
    labels = digits.target.astype(np.int32)
    x_rest, x_test, y_rest, y_test = train_test_split(
        images, labels, test_size=0.2, stratify=labels, random_state=0)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=0.25, stratify=y_rest, random_state=0)
    return (x_train, y_train), (x_val, y_val), (x_test, y_test)


def load(data_dir=None):
    del data_dir  # embedded in scikit-learn
    train, val, test = fixed_split()
    ds = lambda xy: tf.data.Dataset.from_tensor_slices(xy)  # noqa: E731
    return Source(train=ds(train), val=ds(val), test=ds(test), num_train=len(train[1]),
                  num_val=len(val[1]), num_test=len(test[1]), num_classes=NUM_CLASSES,
                  input_shape=INPUT_SHAPE, mean=MEAN, std=STD, pad=1, flip=False)
