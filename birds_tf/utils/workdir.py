"""Reading a finished ``launch.train`` workdir: results, metrics, models, masks, data.

The run's settings are read by ``birds_tf.experiment.train_eval.Config.from_workdir``.

Why: the report, the figures and the exporter all start from a workdir path given on a command
line, and must fail with the path in the message when it is not one.
"""
import glob
import json
import os
import re

from birds_tf.utils import records

__all__ = ["NotAWorkdirError", "check", "results", "history", "label", "load_model", "mask_files",
           "splits"]


class NotAWorkdirError(ValueError):
    """The path is not a finished workdir of ``launch.train``."""


def check(workdir, need=("results.json",)):
    """``workdir`` as a string, after checking it exists and holds the files in ``need``."""
    workdir = os.fspath(workdir)
    if not os.path.isdir(workdir):
        raise NotAWorkdirError(f"{workdir!r} is not a workdir: no such directory.")
    for name in need:
        if not os.path.exists(os.path.join(workdir, name)):
            raise NotAWorkdirError(
                f"{workdir!r} is not a finished launch.train workdir: it has no {name} "
                "(train into it with python -m launch.train --workdir=...).")
    return workdir


def results(workdir):
    with open(os.path.join(check(workdir), "results.json")) as f:
        out = json.load(f)
    out.setdefault("workdir", os.fspath(workdir))
    return out


def history(workdir):
    return records.read_metrics_csv(os.path.join(check(workdir, ("metrics.csv",)), "metrics.csv"))


def label(workdir, res=None):
    """A legend label: the paper's method name and the target sparsity."""
    from birds_tf.metrics.table import METHOD_NAMES
    res = res or results(workdir)
    name = METHOD_NAMES.get(res.get("method"), res.get("method", os.path.basename(workdir)))
    sparsity = float(res.get("target_sparsity") or 0.0)
    return f"{name} ({100 * sparsity:.0f}%)" if sparsity else name


def load_model(workdir, which="final"):
    """The saved classifier (masks included): ``checkpoints/{which}.keras``."""
    if which not in ("best", "final"):
        raise ValueError(f"which must be 'best' or 'final', got {which!r}.")
    path = os.path.join(check(workdir, (f"checkpoints/{which}.keras",)), "checkpoints",
                        f"{which}.keras")
    import keras

    import birds_tf
    birds_tf.register_keras_objects()  # the masked layers, by name
    return keras.models.load_model(path, compile=False)


def mask_files(workdir):
    """``[(epoch, path)]`` of the per-epoch masks a sparse run saved, in epoch order."""
    paths = glob.glob(os.path.join(os.fspath(workdir), "masks", "epoch_*.npz"))
    return sorted((int(re.search(r"epoch_(\d+)", p).group(1)), p) for p in paths)


def splits(workdir, cfg):
    """The run's dataset splits, as it was trained on (same limits and seed).

    Args:
      workdir: the run's folder (checked).
      cfg: its settings, ``birds_tf.experiment.train_eval.Config.from_workdir(workdir)``.
    """
    from birds_tf import data as data_lib
    check(workdir, ())
    return data_lib.get_dataset(cfg.dataset, batch_size=cfg.batch_size, data_dir=cfg.data_dir,
                                seed=cfg.seed, eval_batch_size=cfg.eval_batch_size,
                                max_train=cfg.max_train, max_eval=cfg.max_eval)
