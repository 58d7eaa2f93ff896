"""Per-epoch protocol callbacks: evaluation, the metrics file, and the best/final models.

They share one ``logs`` dict per epoch (Keras passes the same object down the list), so the
evaluation callback must come first; everything after it (sparsity rules, TensorBoard, the CSV)
sees the validation and test figures.
"""
import os
import time

import keras
import numpy as np

from birds_tf.sparsity import masks as masks_lib
from birds_tf.training import epoch_eval, resume
from birds_tf.training.optimizer import current_lr
from birds_tf.utils import records
from birds_tf.utils.workdir import Workdir


def scalar(value, default=np.nan):
    """A float from a log entry (a scalar, or a 1-element array under multi-worker training)."""
    if value is None:
        return default
    return float(np.asarray(value, dtype=np.float64).reshape(-1)[0])


class EpochEvaluation(keras.callbacks.Callback):
    """Validation and test SA / PGD-20 RA / robust loss after every epoch.

    Each epoch's PGD uses its own random starts, drawn from (seed, epoch): the authors' code draws
    fresh ones at every evaluation, and these figures feed Flying Bird+'s triggers and the best
    checkpoint, so reusing one set would correlate the epochs' noise. Keyed by the epoch, a resumed
    run draws exactly what an uninterrupted one drew.
    """

    def __init__(self, splits, attack=epoch_eval.EVAL_ATTACK, strategy=None, with_test=True,
                 seed=0):
        super().__init__()
        self.seed = seed
        self.splits = splits
        self.attack = attack
        self.strategy = strategy
        self.with_test = with_test
        self._evaluator = None
        self._lr = None

    def on_epoch_begin(self, epoch, logs=None):
        # The rate used during the epoch (PyTorch's scheduler steps after it).
        self._lr = current_lr(self.model.optimizer)

    def evaluator(self):
        if self._evaluator is None:
            self._evaluator = epoch_eval.SplitEvaluator(self.model.net, self.attack,
                                                        self.strategy, self.seed)
        return self._evaluator

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        # The trainer's running metrics are the training RA and loss of this epoch.
        logs["train_loss"] = scalar(logs.get("loss"))
        logs["train_ra"] = 100.0 * scalar(logs.get("ra"))
        logs["lr"] = self._lr if self._lr is not None else current_lr(self.model.optimizer)
        val = self.evaluator()(self.splits.val, draw=epoch)
        logs.update(val_sa=val["sa"], val_ra=val["ra"], val_robust_loss=val["robust_loss"])
        if self.with_test:
            test = self.evaluator()(self.splits.test, draw=epoch)
            logs.update(test_sa=test["sa"], test_ra=test["ra"],
                        test_robust_loss=test["robust_loss"])


class MetricsWriter(keras.callbacks.Callback):
    """One row per epoch in ``metrics.csv``, rewritten atomically so a crash never truncates it.

    Extra numeric log entries (sparsity callbacks add theirs) become extra columns.
    """

    def __init__(self, path, history=None, epoch_offset=0, stage=None):
        super().__init__()
        self.path = path
        self.history = list(history or [])
        self.epoch_offset = epoch_offset
        self.stage = stage
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        row = {"epoch": epoch + 1 + self.epoch_offset}
        if self.stage is not None:
            row["stage"] = self.stage
        for key, value in logs.items():
            if key in ("loss", "ra"):
                continue
            if isinstance(value, (int, float, np.floating, np.integer)) or (
                    hasattr(value, "shape") and np.size(value) == 1):
                row[key] = scalar(value)
        try:
            row["density"] = masks_lib.global_density(self.model.net)
        except ValueError:
            row["density"] = 1.0
        row["seconds"] = time.time() - (self._start or time.time())
        self.history.append(row)
        records.write_metrics_csv(self.path, self.history)


class BestAndFinalModels(keras.callbacks.Callback):
    """Saves the classifier (masks included) as ``best.keras`` (highest val RA) and ``final.keras``.

    These are what evaluation, export and reports load; they hold no optimizer state.
    """

    def __init__(self, directory, best_val_ra=-1.0, save_best=True):
        super().__init__()
        self.directory = directory
        self.best_val_ra = best_val_ra
        self.save_best = save_best
        os.makedirs(directory, exist_ok=True)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        val_ra = float(logs.get("val_ra", -1.0))
        if self.save_best and val_ra > self.best_val_ra:
            self.best_val_ra = val_ra
            records.atomic_save_model(self.model.net, self._path("best"))
        records.atomic_save_model(self.model.net, self._path("final"))

    def _path(self, which):
        return os.path.join(self.directory, Workdir.model_file_name(which))


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stops a run whose loss turns NaN/inf, before the bad weights reach any checkpoint.

    Checkpoints are written only at the end of an epoch (or at a SIGTERM's step), so the last
    good one stays; the error says where it is and how to resume it with a lower rate.

    Args:
      exp: the experiment (for the checkpoint folder in the message).
      partial: the resumed state's ``partial`` entry (an epoch a SIGTERM stopped), so steps are
        numbered within the whole epoch.
    """

    def __init__(self, exp, partial=None):
        super().__init__()
        self.exp = exp
        self.epoch = 0
        self.partial = partial
        self.offset = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.offset = 0
        if self.partial and epoch == int(self.partial["epoch"]) - 1:
            self.offset = int(self.partial["step"])

    def on_train_batch_end(self, batch, logs=None):
        step = self.offset + batch + 1
        resume.fault_point("step", self.epoch + 1, step)
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(scalar(loss)):
            self.model.stop_training = True
            last = (f"epoch {self.epoch} and step {self.offset} of epoch {self.epoch + 1}"
                    if self.offset else f"epoch {self.epoch}")
            raise FloatingPointError(
                f"The training loss became {scalar(loss)} at epoch {self.epoch + 1}, step "
                f"{step}. Nothing after the last good checkpoint ({last}) was saved; it is in "
                f"{Workdir(self.exp.workdir).resume_dir}. Resume it with a lower rate: rerun "
                "the same command with --gin_bindings='train_eval.lr = <lower>' and "
                "--resume_changed_config (the change is recorded in the workdir), or check "
                "the data.")


class MaskHistory(keras.callbacks.Callback):
    """Writes every layer's mask as ``masks/epoch_XXX.npz`` (epoch 000 = before training).

    Why: mask-similarity figures (paper Figure A8) and exact training-FLOPs integration need the
    masks between epochs, which the checkpoints (best/final only) do not keep. Bit-packed and
    compressed, a ResNet-18 mask is about 1 MB; ``every`` thins them out for long runs.
    """

    def __init__(self, directory, every=1):
        super().__init__()
        self.directory = directory
        self.every = int(every)
        os.makedirs(directory, exist_ok=True)

    def _save(self, epoch):
        net = getattr(self.model, "net", self.model)
        records.save_mask_file(os.path.join(self.directory, Workdir.mask_file_name(epoch)),
                       masks_lib.get_masks(net))

    def on_train_begin(self, logs=None):
        if not os.path.exists(os.path.join(self.directory, Workdir.mask_file_name(0))):
            self._save(0)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0 or (epoch + 1) == (self.params or {}).get("epochs"):
            self._save(epoch + 1)
