"""A tfds ``as_dataset`` stand-in for CIFAR with real-style ``id`` features (``train_<index>``).

``tfds.testing.mock_data(num_examples=...)`` fills ``id`` with random strings, but birds-tf splits
CIFAR's training set by the file index in that id (the reference's validation images), so CIFAR
tests mock through this instead.
"""
import numpy as np
import tensorflow as tf

# 24 training-split ids around the train/validation border: 16 train, 8 validation.
BORDER_INDEX = np.arange(44984, 45008)


def cifar_mock(train_index, num_test, num_classes=10, seen=None):
    """A tfds ``_as_dataset`` stand-in: random images, ids ``train_<index>`` in the given (hashed)
    order, the pixel [0, 0, 0] holding ``index % 256`` and the label ``index % num_classes``."""
    def as_dataset(self, split, **kwargs):
        if seen is not None:
            seen.append(str(split))
        prefix, index = ("test", np.arange(num_test)) if str(split) == "test" else \
            ("train", np.asarray(train_index))
        images = np.random.default_rng(len(index)).integers(0, 256, (len(index), 32, 32, 3),
                                                            dtype=np.uint8)
        images[:, 0, 0, 0] = index % 256
        example = {"image": images, "label": (index % num_classes).astype(np.int64),
                   "id": np.array([f"{prefix}_{i:05d}".encode() for i in index])}
        if num_classes == 100:
            example["coarse_label"] = (index % 20).astype(np.int64)
        return tf.data.Dataset.from_tensor_slices(example)
    return as_dataset


def mock(num_test=24, train_index=BORDER_INDEX, num_classes=10):
    """``tfds.testing.mock_data`` over ``cifar_mock``: use as a context manager."""
    import tensorflow_datasets as tfds
    return tfds.testing.mock_data(as_dataset_fn=cifar_mock(train_index, num_test, num_classes))
