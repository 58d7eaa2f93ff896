"""CIFAR-shaped synthetic images (32x32x3, 10 classes), generated in memory.

Why: timing a whole run at the paper's image and model shapes (``benchmarks/whole_run.py``
``--shape=cifar``) needs CIFAR's shapes, not CIFAR's pixels, and must run where nothing can be
downloaded. Accuracies on it say nothing about CIFAR.

Each image is ``(1 - l) T_label + l T_other + noise`` with ``T`` fixed 4x4 colour block patterns
(one per class, seed 1234), ``l`` uniform in [0, 0.5) and Gaussian noise (sd 0.03), clipped to
[0, 1]: images with ``l`` near 0.5 lie near a class boundary, so robust accuracy spreads between 0
and 1 (``benchmarks/trained_model.py`` trains its robust model on the same images). The splits are fixed (seeds 0,
1, 2 for train, validation, test).
"""
import numpy as np

from birds_tf.data.source import from_arrays

NUM_CLASSES = 10
INPUT_SHAPE = (32, 32, 3)
SIZES = {"train": 2048, "val": 512, "test": 512}
# Pixel mean/std of the training split; a test recomputes them.
MEAN = (0.5232, 0.4679, 0.4836)
STD = (0.2409, 0.2372, 0.2401)


def images(n, seed, mix=0.5, noise=0.03, size=32):
    """``n`` images (float32 NHWC in [0, 1], ``size`` x ``size`` x 3) and int32 labels; the same
    for the same seed. The templates are fixed (seed 1234) whatever ``seed``, so splits drawn with
    different seeds share them."""
    templates = np.random.default_rng(1234).random((NUM_CLASSES, 4, 4, 3))
    templates = np.kron(templates, np.ones((1, size // 4, size // 4, 1)))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, NUM_CLASSES, n)
    other = (y + rng.integers(1, NUM_CLASSES, n)) % NUM_CLASSES
    lam = rng.uniform(0.0, mix, n)[:, None, None, None]
    x = (1.0 - lam) * templates[y] + lam * templates[other] + rng.normal(0.0, noise,
                                                                          templates[y].shape)
    return np.clip(x, 0.0, 1.0).astype(np.float32), y.astype(np.int32)


def load(data_dir=None):
    del data_dir  # generated
    splits = [images(SIZES[name], seed) for seed, name in enumerate(("train", "val", "test"))]
    return from_arrays(*splits, num_classes=NUM_CLASSES, input_shape=INPUT_SHAPE, mean=MEAN,
                       std=STD, pad=4, flip=True)
