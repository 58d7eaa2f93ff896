"""Tiny-ImageNet from the unzipped official archive, split as the reference splits it.

tensorflow-datasets has no Tiny-ImageNet builder, so the data is read straight from the folder the
official zip extracts to. The reference trains on 90% of the official training images (a fixed
`np.random.seed(10)` permutation), validates on the other 10%, and tests on the official
validation images; the same permutation is used here so that the splits contain the same images.
File order mirrors torchvision's `ImageFolder` (classes sorted by wnid, files sorted), which is what
the permutation was applied to. Only paths are shuffled; JPEGs are decoded in a parallel map.
"""
import os

import numpy as np
import tensorflow as tf

from birds_tf.data.errors import DatasetNotFoundError
from birds_tf.data.source import Source

FOLDER = "tiny-imagenet-200"
URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
DEFAULT_DIR = os.path.join("~", "tensorflow_datasets", "downloads", "manual")
MEAN = (0.4802, 0.4481, 0.3975)
STD = (0.2302, 0.2265, 0.2262)
INPUT_SHAPE = (64, 64, 3)
SPLIT_SEED = 10
_EXTENSIONS = (".jpeg", ".jpg", ".png")


def _missing_message(data_dir, problem):
    return (
        f"Tiny-ImageNet was not found ({problem}). birds-tf looks in "
        f"{os.path.join(data_dir, FOLDER)} and then in {data_dir} itself. To fix it, download "
        f"{URL} (about 240 MB) and unzip it there:\n"
        f"    mkdir -p {data_dir} && cd {data_dir} && wget {URL} && unzip -q {FOLDER}.zip\n"
        f"The expected layout is\n"
        f"    {data_dir}/{FOLDER}/wnids.txt\n"
        f"    {data_dir}/{FOLDER}/train/<wnid>/images/*.JPEG   (200 classes x 500 images)\n"
        f"    {data_dir}/{FOLDER}/val/images/*.JPEG            (10,000 images)\n"
        f"    {data_dir}/{FOLDER}/val/val_annotations.txt      (file<TAB>wnid<TAB>bbox per line)\n"
        f"Point birds-tf at another folder with --gin_bindings=\"train_eval.data_dir='DIR'\", "
        f"get_dataset(..., data_dir='DIR') or the BIRDS_TF_DATA environment variable "
        f"(default {DEFAULT_DIR}).")


def find_root(data_dir):
    """The folder holding `train/` and `val/`, or None."""
    for candidate in (os.path.join(data_dir, FOLDER), data_dir):
        if (os.path.isdir(os.path.join(candidate, "train"))
                and os.path.isdir(os.path.join(candidate, "val"))):
            return candidate
    return None


def _image_folder(directory, classes):
    """(paths, labels) in torchvision ImageFolder order: class by class, walk and files sorted."""
    paths, labels = [], []
    for label, wnid in enumerate(classes):
        for root, _, names in sorted(os.walk(os.path.join(directory, wnid), followlinks=True)):
            for fname in sorted(names):
                if fname.lower().endswith(_EXTENSIONS):
                    paths.append(os.path.join(root, fname))
                    labels.append(label)
    return paths, labels


def _test_files(val_dir, classes, data_dir):
    """The official validation images with labels from val_annotations.txt (or class folders)."""
    annotations = os.path.join(val_dir, "val_annotations.txt")
    if not os.path.isfile(annotations):
        if all(os.path.isdir(os.path.join(val_dir, c)) for c in classes):
            return _image_folder(val_dir, classes)
        raise DatasetNotFoundError(_missing_message(data_dir, f"{annotations} is missing"))
    index = {wnid: i for i, wnid in enumerate(classes)}
    rows = []
    with open(annotations) as f:
        for line_number, line in enumerate(f, 1):
            fields = line.strip().split("\t")
            if not fields[0]:
                continue
            if len(fields) < 2 or fields[1] not in index:
                raise ValueError(f"{annotations}:{line_number}: expected 'file<TAB>wnid' with a "
                                 f"wnid that has a train/ folder, got {line.strip()!r}.")
            rows.append((index[fields[1]], fields[0]))
    rows.sort()  # class by class, as ImageFolder over a per-class validation folder
    paths = [os.path.join(val_dir, "images", fname) for _, fname in rows]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DatasetNotFoundError(_missing_message(
            data_dir, f"{len(missing)} annotated validation images are missing, e.g. {missing[0]}"))
    return paths, [label for label, _ in rows]


def decode(path, label):
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    return tf.ensure_shape(image, INPUT_SHAPE), label


def load(data_dir=None):
    data_dir = os.path.abspath(os.path.expanduser(data_dir or DEFAULT_DIR))
    root = find_root(data_dir)
    if root is None:
        raise DatasetNotFoundError(_missing_message(data_dir, "no train/ and val/ folders"))
    train_dir = os.path.join(root, "train")
    classes = sorted(e.name for e in os.scandir(train_dir) if e.is_dir())
    paths, labels = _image_folder(train_dir, classes)
    if not paths:
        raise DatasetNotFoundError(_missing_message(data_dir, f"no images under {train_dir}"))
    test_paths, test_labels = _test_files(os.path.join(root, "val"), classes, data_dir)

    permutation = np.random.RandomState(SPLIT_SEED).permutation(len(paths))
    num_val = len(paths) // 10
    train_idx, val_idx = permutation[:len(paths) - num_val], permutation[len(paths) - num_val:]
    paths, labels = np.asarray(paths), np.asarray(labels, np.int32)

    def files(p, y):
        return tf.data.Dataset.from_tensor_slices((tf.constant([str(x) for x in p], tf.string),
                                                   tf.constant([int(x) for x in y], tf.int32)))

    return Source(
        train=files(paths[train_idx], labels[train_idx]),
        val=files(paths[val_idx], labels[val_idx]), test=files(test_paths, test_labels),
        num_train=len(train_idx), num_val=len(val_idx), num_test=len(test_paths),
        num_classes=len(classes), input_shape=INPUT_SHAPE, mean=MEAN, std=STD, pad=4, flip=True,
        decode=decode)
