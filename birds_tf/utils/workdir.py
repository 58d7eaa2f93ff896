"""Reading a finished ``launch.train`` workdir: results, metrics, models, masks.

The run's settings are read by ``birds_tf.experiment.train_eval.Config.from_workdir``; its data
splits and a legend label by ``birds_tf.plots.common`` (``splits``, ``label``), the layers that
know datasets and method names.

Why: the report, the figures and the exporter all start from a workdir path given on a command
line, and must fail with the path in the message when it is not one.
"""
import glob
import json
import os
import re

from birds_tf.utils import records

__all__ = ["NotAWorkdirError", "check", "results", "history", "load_model", "mask_files"]


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


def load_model(workdir, which="final"):
    """The saved classifier (masks included): ``checkpoints/{which}.keras``."""
    if which not in ("best", "final"):
        raise ValueError(f"which must be 'best' or 'final', got {which!r}.")
    path = os.path.join(check(workdir, (f"checkpoints/{which}.keras",)), "checkpoints",
                        f"{which}.keras")
    return records.load_model(path)


def mask_files(workdir):
    """``[(epoch, path)]`` of the per-epoch masks a sparse run saved, in epoch order."""
    paths = glob.glob(os.path.join(os.fspath(workdir), "masks", "epoch_*.npz"))
    return sorted((int(re.search(r"epoch_(\d+)", p).group(1)), p) for p in paths)
