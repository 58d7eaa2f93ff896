"""`get_dataset`: one call that gives a training run every split it needs.

Besides train/val/test, a run needs the training split once more without augmentation
(`train_eval`) to measure the robust generalisation gap, plus the sizes and the normaliser
statistics that the model (not the pipeline) applies. Arguments are checked here, before any data
is touched, so a typo in a config fails in the first second of a job, and a missing dataset fails
before the model is built.
"""
import dataclasses
import math
import numbers
import os

import tensorflow as tf

from birds_tf.data import pipeline

DATASETS = ("digits", "animals", "cifar10", "cifar100", "tiny_imagenet", "synthetic")
DATA_DIR_ENV = "BIRDS_TF_DATA"


@dataclasses.dataclass(frozen=True, eq=False)
class Splits:
    """Batched datasets of (float32 NHWC images in [0, 1], int32 labels) and their metadata."""
    train: tf.data.Dataset
    train_eval: tf.data.Dataset
    val: tf.data.Dataset
    test: tf.data.Dataset
    num_classes: int
    input_shape: tuple
    num_train: int
    num_val: int
    num_test: int
    steps_per_epoch: int
    name: str
    mean: tuple
    std: tuple
    # ``train_epochs(first, last)``: the training batches of those epochs, keyed by epoch (see
    # pipeline.train_epochs_pipeline); what resumable runs feed to ``fit``.
    train_epochs: object = None


def _integer(value):
    """`value` as an int if it is an integer (numpy integers too), else None; bools are not."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return None
    return int(value)


def _positive_int(name, value, optional=False):
    if value is None and optional:
        return None
    number = _integer(value)
    if number is None or number < 1:
        raise ValueError(f"{name} must be a positive integer{' or None' if optional else ''}, "
                         f"got {value!r}.")
    return number


def _load(name, data_dir):
    if name == "digits":
        from birds_tf.data import digits
        return digits.load(data_dir)
    if name == "animals":
        from birds_tf.data import animals
        return animals.load(data_dir)
    if name == "synthetic":
        from birds_tf.data import synthetic
        return synthetic.load(data_dir)
    if name in ("cifar10", "cifar100"):
        from birds_tf.data import cifar
        return cifar.load(name, data_dir)
    from birds_tf.data import tiny_imagenet
    return tiny_imagenet.load(data_dir)


def get_dataset(name, batch_size=128, data_dir=None, seed=0, eval_batch_size=None,
                max_train=None, max_eval=None, augment=True) -> Splits:
    """All splits of dataset `name` (one of `DATASETS`).

    `data_dir`: where the data lives; defaults to `$BIRDS_TF_DATA`, then to the tfds default
    (`$TFDS_DATA_DIR` or ~/tensorflow_datasets) for CIFAR and ~/tensorflow_datasets/downloads/manual
    for Tiny-ImageNet. Missing data raises `DatasetNotFoundError` (a FileNotFoundError) that says
    how to prepare it; nothing is downloaded. `max_train` / `max_eval` keep the first N examples of
    the training / each evaluation split after the fixed split.
    """
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; allowed: {DATASETS}.")
    batch_size = _positive_int("batch_size", batch_size)
    eval_batch_size = _positive_int("eval_batch_size", eval_batch_size, optional=True) or batch_size
    max_train = _positive_int("max_train", max_train, optional=True)
    max_eval = _positive_int("max_eval", max_eval, optional=True)
    if _integer(seed) is None:
        raise ValueError(f"seed must be an integer, got {seed!r}.")
    seed = _integer(seed)
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise ValueError(f"data_dir must be a path or None, got {data_dir!r}.")
    data_dir = os.fspath(data_dir) if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    if data_dir:
        data_dir = os.path.expanduser(data_dir)

    source = _load(name, data_dir or None)
    cap = lambda n, limit: n if limit is None else min(n, limit)  # noqa: E731
    num_train = cap(source.num_train, max_train)
    return Splits(
        train=pipeline.train_pipeline(source.train, source, batch_size, max_train, num_train,
                                      seed, bool(augment)),
        train_eval=pipeline.eval_pipeline(source.train, source, eval_batch_size, max_train),
        val=pipeline.eval_pipeline(source.val, source, eval_batch_size, max_eval),
        test=pipeline.eval_pipeline(source.test, source, eval_batch_size, max_eval),
        num_classes=int(source.num_classes), input_shape=tuple(source.input_shape),
        num_train=num_train, num_val=cap(source.num_val, max_eval),
        num_test=cap(source.num_test, max_eval), steps_per_epoch=math.ceil(num_train / batch_size),
        name=name, mean=tuple(source.mean), std=tuple(source.std),
        train_epochs=lambda first, last: pipeline.train_epochs_pipeline(
            source.train, source, batch_size, max_train, num_train, seed, bool(augment), first,
            last))
