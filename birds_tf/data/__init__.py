"""Input pipelines for the paper's datasets, behind one function.

Training code should not care where images come from: `get_dataset` returns every split already
batched, in [0, 1] pixel space (attacks clip there; the model normalises), with the reference's
fixed splits and augmentation. `digits` needs no download, so tests and smoke runs work anywhere; `animals` ships in a
registry package and is the offline set on which robust overfitting shows.
"""
from birds_tf.data.errors import DatasetNotFoundError
from birds_tf.data.splits import DATASETS, Splits, get_dataset

__all__ = ["DATASETS", "DatasetNotFoundError", "Splits", "get_dataset"]
