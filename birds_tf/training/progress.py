"""One console line per epoch, in place of Keras' progress bar.

Why: Keras prints every log entry, so a sparse ResNet-18 run shows twenty per-layer densities and
both ``ra`` (the trainer's running accuracy, a fraction) and ``train_ra`` (the same in percent).
This line holds what the paper's protocol reads, every accuracy in percent::

    epoch  3/24  loss 1.873  train RA 41.2%  val SA 63.0% RA 35.1%  test SA 61.9% RA 33.4%  \
density 20.0%  k 8.3%  41 s

Per-layer densities stay in ``metrics.csv`` and TensorBoard. ``format_epoch`` and
``format_stage`` are pure, so the lines are tested without training.
"""
import math
import sys
import time

import keras

from birds_tf.sparsity import masks as masks_lib


def _number(logs, key):
    """A finite float from ``logs[key]`` or None (missing, NaN, or not a number)."""
    value = logs.get(key)
    try:
        value = float(getattr(value, "numpy", lambda: value)())
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _percent(value):
    return f"{value:.1f}%"


def format_epoch(epoch, epochs, logs, seconds=None, density=None):
    """The console line of a main-stage epoch.

    Args:
      epoch: the finished epoch, counted from 1.
      epochs: the run's number of epochs.
      logs: the epoch's Keras logs after ``EpochEvaluation`` (``train_loss``/``loss``,
        ``train_ra`` in percent or the trainer's ``ra`` fraction, ``val_sa``, ``val_ra``,
        ``test_sa``, ``test_ra`` in percent, and ``k`` (a fraction) from Flying Bird(+));
        missing entries are left out of the line.
      seconds: the epoch's wall time.
      density: the global density (a fraction) of a sparse run; None for dense runs.
    """
    width = len(str(epochs))
    parts = [f"epoch {epoch:>{width}}/{epochs}"]
    loss = _number(logs, "train_loss")
    loss = _number(logs, "loss") if loss is None else loss
    if loss is not None:
        parts.append(f"loss {loss:.3f}")
    train_ra = _number(logs, "train_ra")
    if train_ra is None and _number(logs, "ra") is not None:
        train_ra = 100.0 * _number(logs, "ra")
    if train_ra is not None:
        parts.append(f"train RA {_percent(train_ra)}")
    for split in ("val", "test"):
        sa, ra = _number(logs, f"{split}_sa"), _number(logs, f"{split}_ra")
        pieces = ([f"SA {_percent(sa)}"] if sa is not None else []) + (
            [f"RA {_percent(ra)}"] if ra is not None else [])
        if pieces:
            parts.append(f"{split} " + " ".join(pieces))
    if density is not None:
        parts.append(f"density {_percent(100.0 * density)}")
    k = _number(logs, "k")
    if k is not None:
        parts.append(f"k {_percent(100.0 * k)}")
    if seconds is not None:
        parts.append(f"{seconds:.0f} s")
    return "  ".join(parts)


def format_stage(row):
    """The console line of a pre-stage epoch (Robust Bird's stage 1, IWI, static pruning).

    Args:
      row: a ``PreStageLog`` row: ``stage``, ``epoch``, ``train_loss``, ``train_acc`` and
        ``val_sa`` (percent), optionally ``val_ra`` (percent), ``mask_distance_max`` and
        ``seconds``.
    """
    parts = [f"{row.get('stage', 'stage')} epoch {row.get('epoch')}"]
    for key, label, percent in (("train_loss", "loss", False), ("train_acc", "train acc", True),
                                ("val_sa", "val SA", True), ("val_ra", "val RA", True),
                                ("mask_distance_max", "mask distance", False)):
        value = _number(row, key)
        if value is not None:
            parts.append(f"{label} {_percent(value) if percent else f'{value:.3f}'}")
    seconds = _number(row, "seconds")
    if seconds is not None:
        parts.append(f"{seconds:.0f} s")
    return "  ".join(parts)


class EpochProgress(keras.callbacks.Callback):
    """Prints ``format_epoch`` after every epoch; goes last in the callback list, after the
    evaluation and sparsity callbacks have filled ``logs``.

    Args:
      epochs: the run's number of epochs (for ``epoch 3/24``).
      sparse: also print the global density of the model's masked layers.
      stream: where the lines go (default ``sys.stdout``, looked up at each line).
    """

    def __init__(self, epochs, sparse=False, stream=None):
        super().__init__()
        self.epochs = int(epochs)
        self.sparse = bool(sparse)
        self.stream = stream
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        density = None
        if self.sparse:
            try:
                density = masks_lib.global_density(getattr(self.model, "net", self.model))
            except ValueError:  # no masked layer
                density = None
        seconds = time.time() - self._start if self._start is not None else None
        line = format_epoch(epoch + 1, self.epochs, dict(logs or {}), seconds, density)
        stream = self.stream or sys.stdout
        print(line, file=stream, flush=True)
