"""CIFAR-10/100 from tensorflow-datasets, with the reference's fixed 45k/5k split.

The reference validates on training images 45000..49999 (not a random subset) and keeps the official
test set for testing, so the split strings below are fixed. Loading goes through the real tfds
builder with `download=False` semantics: `as_dataset` is the call that finds out whether the data is
prepared, and it is also the call `tfds.testing.mock_data` replaces, so tests run this exact code
without any files while a real missing dataset fails fast with instructions.
"""
from birds_tf.data.errors import DatasetNotFoundError
from birds_tf.data.source import Source

SPLITS = {"train": "train[:45000]", "val": "train[45000:]", "test": "test"}

STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
# torchvision RandomRotation(15) on CIFAR-100 only (official code notes 5.5).
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


def load(name, data_dir=None):
    """A `Source` over the prepared tfds dataset `name`; raises DatasetNotFoundError if absent."""
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    try:
        datasets = builder.as_dataset(split=dict(SPLITS), as_supervised=True, shuffle_files=False)
    except (AssertionError, KeyError, ValueError) as err:
        # AssertionError: no folder at all; KeyError: a folder without a finished preparation.
        if builder.is_prepared():
            raise
        raise DatasetNotFoundError(
            _missing_message(name, data_dir or builder.data_dir_root, builder.data_dir)) from err
    counts = {k: _count(ds, builder, SPLITS[k]) for k, ds in datasets.items()}
    mean, std = STATS[name]
    return Source(
        train=datasets["train"], val=datasets["val"], test=datasets["test"],
        num_train=counts["train"], num_val=counts["val"], num_test=counts["test"],
        num_classes=NUM_CLASSES[name], input_shape=(32, 32, 3), mean=mean, std=std, pad=4,
        flip=True, rotate_degrees=ROTATE_DEGREES[name])
