"""CIFAR-10/100 from tensorflow-datasets, with the reference's fixed 45k/5k split.

The reference validates on training images 45000..49999 of the CIFAR files (torchvision's order;
not a random subset) and keeps the official test set for testing. tfds stores the training examples
in a hashed order, so ``train[45000:]`` would be a fixed pseudo-random 5k; the split is therefore
made by the ``id`` feature, ``train_<index>`` with ``index`` the image's position in the CIFAR
files (``data_batch_1..5``, torchvision's order): train = 0..44999, val = 45000..49999, the same
images as the reference (in tfds' order within each split). Loading goes through the real tfds
builder with `download=False` semantics: `as_dataset` is the call that finds out whether the data is
prepared, and it is also the call `tfds.testing.mock_data` replaces, so tests run this exact code
without any files while a real missing dataset fails fast with instructions.
"""
import tensorflow as tf

from birds_tf.data.errors import DatasetNotFoundError
from birds_tf.data.source import Source

SPLITS = {"train": "train", "test": "test"}  # tfds splits read; train/val are cut by ``id``
VAL_START = 45000  # first validation index (the authors' ``datasets.py``: train = indices 0..44999)

STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
# torchvision RandomRotation(15) on CIFAR-100 only (the authors' ``datasets.py``).
ROTATE_DEGREES = {"cifar10": 0.0, "cifar100": 15.0}


def _missing_message(name, target, looked_in):
    return (
        f"{name} is not prepared for tensorflow-datasets in {looked_in}. birds-tf never downloads "
        f"data while building the pipeline. On a machine with internet, prepare it with\n"
        f"    tfds build {name} --data_dir={target}\n"
        f"or, in Python,\n"
        f"    import tensorflow_datasets as tfds\n"
        f"    tfds.builder({name!r}, data_dir={str(target)!r}).download_and_prepare()\n"
        f"then copy that folder here (it must contain {name}/<version>/) and point birds-tf at it "
        f"with --gin_bindings=\"train_eval.data_dir='{target}'\" (or get_dataset(..., "
        f"data_dir='{target}'), or the BIRDS_TF_DATA environment variable).")


def _count(ds, builder, split):
    n = int(ds.cardinality())
    if n >= 0:
        return n
    try:
        return int(builder.info.splits[split].num_examples)
    except (KeyError, ValueError):
        return int(ds.reduce(0, lambda c, _: c + 1))


def file_index(example_id):
    """The position in the CIFAR files of a tfds example, from its ``id`` (``train_01234``)."""
    return tf.strings.to_number(tf.strings.regex_replace(example_id, "^[a-z]+_", ""), tf.int64)


def _supervised(example):
    return example["image"], example["label"]


def _by_index(ds, keep):
    return ds.filter(lambda e: keep(file_index(e["id"]))).map(_supervised)


def _split_counts(ids):
    """(#train, #val) from the id-only training split (no image decoding)."""
    def add(counts, example_id):
        is_val = tf.cast(file_index(example_id) >= VAL_START, tf.int64)
        return counts + tf.stack([1 - is_val, is_val])
    counts = ids.reduce(tf.zeros([2], tf.int64), add).numpy()
    return int(counts[0]), int(counts[1])


def load(name, data_dir=None):
    """A `Source` over the prepared tfds dataset `name`; raises DatasetNotFoundError if absent."""
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    try:
        datasets = builder.as_dataset(split=dict(SPLITS), shuffle_files=False)
    except (AssertionError, KeyError, ValueError) as err:
        # AssertionError: no folder at all; KeyError: a folder without a finished preparation.
        if builder.is_prepared():
            raise
        raise DatasetNotFoundError(
            _missing_message(name, data_dir or builder.data_dir_root, builder.data_dir)) from err
    ids = builder.as_dataset(split=SPLITS["train"], shuffle_files=False,
                             decoders={"image": tfds.decode.SkipDecoding()}).map(lambda e: e["id"])
    num_train, num_val = _split_counts(ids)
    full = datasets["train"]
    mean, std = STATS[name]
    return Source(
        train=_by_index(full, lambda i: i < VAL_START),
        val=_by_index(full, lambda i: i >= VAL_START),
        test=datasets["test"].map(_supervised),
        num_train=num_train, num_val=num_val,
        num_test=_count(datasets["test"], builder, SPLITS["test"]),
        num_classes=NUM_CLASSES[name], input_shape=(32, 32, 3), mean=mean, std=std, pad=4,
        flip=True, rotate_degrees=ROTATE_DEGREES[name])
