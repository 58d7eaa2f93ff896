"""scikit-learn's 8x8 digits: a real image dataset that ships with a dependency.

It needs no download, so smoke runs, tests and CI exercise the full training and evaluation path
(augmentation, robust-gap evaluation, checkpoints) on any machine in seconds. The 60/20/20 split is
stratified and fixed (`random_state=0`) so that every run sees the same images.
"""
import numpy as np

from birds_tf.data.source import from_arrays, stratified_split

__all__ = ["MEAN", "STD", "NUM_CLASSES", "INPUT_SHAPE", "fixed_split", "load"]

# Pixel mean/std of the fixed training split (1077 images, values k/16); a test recomputes them.
MEAN = (0.3053,)
STD = (0.3760,)
NUM_CLASSES = 10
INPUT_SHAPE = (8, 8, 1)


def fixed_split():
    """((x_train, y_train), (x_val, y_val), (x_test, y_test)); x float32 (N, 8, 8, 1) in [0, 1]."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = (digits.images.astype(np.float32) / 16.0)[..., None]
    labels = digits.target.astype(np.int32)
    return stratified_split(images, labels)


def load(data_dir=None):
    del data_dir  # embedded in scikit-learn
    train, val, test = fixed_split()
    return from_arrays(train, val, test, num_classes=NUM_CLASSES, input_shape=INPUT_SHAPE,
                       mean=MEAN, std=STD, pad=1, flip=False)
