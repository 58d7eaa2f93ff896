"""Resume an interrupted run from its last completed epoch, or the step a SIGTERM stopped at.

After every epoch a ``tf.train.Checkpoint`` of the trainer (weights, masks, optimizer momentum
and iteration count, hence the learning-rate schedule) is written, then ``state.json`` names it
together with the metric history, the best validation RA so far and the state of every callback
that has one (``get_state``/``set_state``). ``state.json`` is replaced atomically and only after
its checkpoint exists, so a crash at any moment leaves a consistent pair; the pair before it
stays as ``state.prev.json`` (its checkpoint is the second one the manager keeps), the fallback
when ``state.json`` or its checkpoint turns out corrupt. On SIGTERM (``preemption``) the same
callback saves at the step boundary: ``state.json`` then also holds ``partial``, the steps done
in the unfinished epoch and the trainer's running metrics.
"""
import logging
import os
import signal
import time

import keras
import numpy as np
import tensorflow as tf

from birds_tf.training import preemption
from birds_tf.utils import records
from birds_tf.utils.resume_state import ResumeState
from birds_tf.utils.workdir import Workdir


class CorruptStateError(ValueError):
    """No resume state of the workdir loads; the message names the files and the fix."""


def checkpoint_dir(exp):
    """The folder of the run's resume checkpoints and ``state.json``."""
    return Workdir(exp.workdir).resume_dir


def _state_path(exp):
    return Workdir(exp.workdir).state_json


def _prev_path(exp):
    return Workdir(exp.workdir).state_prev_json


def _read_state(path):
    """The ``ResumeState`` in the file at ``path``; ``ValueError`` when it is not one."""
    with open(path) as f:
        return ResumeState.from_json(f.read())


def load(exp):
    """The run's ``ResumeState`` (``None`` before its first one); no checks, see
    ``load_checked``."""
    path = _state_path(exp)
    if not os.path.exists(path):
        return None
    return _read_state(path)


def check_checkpoint(path):
    """Read every tensor of the checkpoint at ``path`` (TensorFlow checks each one's CRC32C);
    raise what a torn or flipped file raises."""
    reader = tf.train.load_checkpoint(path)
    for name in reader.get_variable_to_shape_map():
        reader.get_tensor(name)


def load_checked(exp):
    """The newest resume state that loads, its checkpoint included; ``None`` when there is none.

    A ``state.json`` that does not parse, or whose checkpoint is torn or fails its checksums,
    is reported by name and the previous state (``state.prev.json``, one epoch or one
    preemption earlier) is used instead; when neither loads, ``CorruptStateError`` says which
    files and how to start afresh.
    """
    problems = []
    for path in (_state_path(exp), _prev_path(exp)):
        if not os.path.exists(path):
            continue
        try:
            state = _read_state(path)
        except (OSError, ValueError) as e:
            problems.append(f"{path} does not load ({e})")
            continue
        if state.checkpoint:
            try:
                check_checkpoint(state.checkpoint)
            except Exception as e:  # noqa: BLE001  torn files raise IndexError, OpError, ...
                problems.append(f"its checkpoint {state.checkpoint} does not load "
                                f"({type(e).__name__}: {str(e).splitlines()[0][:200]})")
                continue
        if problems:
            logging.warning("Resume state: %s; resuming from %s (epoch %s) instead.",
                            "; ".join(problems), path, state.epoch)
            records.atomic_write_text(_state_path(exp), state.to_json())
        return state
    if problems:
        raise CorruptStateError(
            "Cannot resume: " + "; ".join(problems) + ". No earlier state is left. Move "
            f"{checkpoint_dir(exp)} aside to train this workdir from the start (the finished "
            "epochs' metrics.csv rows are then rewritten).")
    return None


def in_main_stage(state):
    """True once the protocol's main PGD-AT run has started (pre-stages are then finished)."""
    return state is not None and state.stage in ("main", "done")


def save_state(exp, state):
    """``state`` (a ``ResumeState``) as the current ``state.json``; the one it replaces (when it
    loads) becomes ``state.prev.json``."""
    path = _state_path(exp)
    if os.path.exists(path):
        try:
            records.atomic_write_text(_prev_path(exp), _read_state(path).to_json())
        except ValueError:  # a corrupt current state is no fallback
            pass
    records.atomic_write_text(path, state.to_json())


def trainer_checkpoint(model):
    """A ``tf.train.Checkpoint`` of the trainer: weights, masks, optimizer state, attack RNG."""
    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    return tf.train.Checkpoint(model=model, optimizer=optimizer, rng=model.rng)


def restore_trainer(exp, model, state):
    trainer_checkpoint(model).restore(state.checkpoint).expect_partial()


def save_rebuilt(exp, trainer, state, callback_states=None):
    """Make a model rebuilt between epochs the resume point: a checkpoint of ``trainer``
    (``Workdir.rebuilt_checkpoint``), ``state`` pointed at it with the callbacks' entries in
    ``callback_states`` (``{class name: {key: value}}``) updated, then the new ``state.json``.

    Why this order: until the new ``state.json`` is written the old one names the wider
    checkpoint, so a crash before it redoes the rebuild and a crash after it resumes on the
    rebuilt model; either way the run continues as an uninterrupted one.
    """
    epoch = int(state.epoch)
    path = trainer_checkpoint(trainer).write(Workdir(exp.workdir).rebuilt_checkpoint(epoch))
    for name, values in (callback_states or {}).items():
        state.update_callback_state(name, values)
    state.checkpoint = path
    save_state(exp, state)
    return path


def mark_done(exp):
    state = load(exp) or ResumeState(stage="done")
    state.stage = "done"
    state.history = exp.history
    save_state(exp, state)


class ResumeCheckpoint(keras.callbacks.Callback):
    """The trainer's checkpoint and ``state.json`` after every epoch, and at the step boundary
    after a SIGTERM (``preemption``), when ``mid_epoch``; then it raises ``Preempted``.

    Args:
      exp: the experiment (its workdir and history).
      trainer: the ``AdversarialModel`` being fitted.
      writer: the ``MetricsWriter`` whose history the state records.
      stateful_callbacks: callbacks whose ``get_state()`` goes into the state.
      stage, extra: recorded in the state as they are.
      partial: the resumed state's ``partial`` entry: the unfinished epoch's steps already done
        and the running metrics to put back when that epoch begins.
      mid_epoch: save at the step boundary on SIGTERM (``False``: stop there unsaved; the rerun
        starts the epoch again, as after ``kill -9``).
    """

    def __init__(self, exp, trainer, writer, stateful_callbacks=(), stage="main", extra=None,
                 partial=None, mid_epoch=True):
        super().__init__()
        self.exp = exp
        self.trainer = trainer
        self.writer = writer
        self.stateful = [c for c in stateful_callbacks if hasattr(c, "get_state")]
        self.stage = stage
        self.extra = extra or {}
        self.partial = partial
        self.mid_epoch = mid_epoch
        self._manager = None
        self._epoch = 0
        self._steps = 0

    def manager(self):
        if self._manager is None:
            self._manager = tf.train.CheckpointManager(trainer_checkpoint(self.trainer),
                                                       checkpoint_dir(self.exp),
                                                       max_to_keep=2)
        return self._manager

    def _checkpoint_bytes(self):
        ckpt = [self.trainer.weights, self.trainer.optimizer.variables]
        return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize
                   for group in ckpt for v in group) or None

    def _write_checkpoint(self, save):
        try:
            return save()
        except (tf.errors.ResourceExhaustedError, OSError) as e:
            # TensorFlow reports ENOSPC/EDQUOT as RESOURCE_EXHAUSTED
            if isinstance(e, OSError) and not records.is_disk_full(e):
                raise
            raise records.disk_full_error(checkpoint_dir(self.exp),
                                          self._checkpoint_bytes()) from e

    def _state(self, completed, path):
        best = max([r.get("val_ra", -1.0) for r in self.writer.history] or [-1.0])
        state = dict(self.extra)
        state.update(stage=self.stage, epoch=completed, checkpoint=path,
                     history=self.writer.history, best_val_ra=best,
                     callbacks={type(c).__name__: c.get_state() for c in self.stateful})
        previous = load(self.exp)
        previous = previous.to_dict() if previous is not None else {}
        for key in ("pre_stages",):
            if key in previous and key not in state:
                state[key] = previous[key]
        return ResumeState.from_dict(state)

    def _metric_variables(self):
        return [v for m in self.trainer.metrics for v in m.variables]

    def on_epoch_begin(self, epoch, logs=None):
        if preemption.requested():  # arrived during the last epoch's end: nothing to add
            raise preemption.Preempted(
                f"Stopped by SIGTERM after epoch {epoch}; its checkpoint is complete in "
                f"{checkpoint_dir(self.exp)}. Rerun the same command to resume.")
        self._epoch, self._steps = epoch, 0
        if self.partial and epoch == int(self.partial["epoch"]) - 1:
            # fit reset the running metrics; the steps already done count in them
            for var, value in zip(self._metric_variables(), self.partial["metrics"]):
                var.assign(np.asarray(value, dtype=np.dtype(var.dtype)))
            self._steps = int(self.partial["step"])
            self.partial = None

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1
        if not preemption.requested():
            return
        where = f"epoch {self._epoch + 1}, step {self._steps}"
        if not self.mid_epoch:
            raise preemption.Preempted(
                f"Stopped by SIGTERM at {where}; this run (fb_plus_channel or multi-worker) "
                f"saves no mid-epoch state and resumes from the last completed epoch "
                f"({self._epoch}) in {checkpoint_dir(self.exp)}. Rerun the same command.")
        prefix = Workdir(self.exp.workdir).preempted_checkpoint(self._epoch + 1, self._steps)
        path = self._write_checkpoint(lambda: trainer_checkpoint(self.trainer).write(prefix))
        state = self._state(self._epoch, path)
        state.partial = {"epoch": self._epoch + 1, "step": self._steps,
                         "metrics": [np.asarray(v).tolist() for v in self._metric_variables()]}
        save_state(self.exp, state)
        raise preemption.Preempted(
            f"Stopped by SIGTERM at {where}; saved the state of that step in "
            f"{checkpoint_dir(self.exp)}. Rerun the same command: it resumes from that step.")

    def on_epoch_end(self, epoch, logs=None):
        path = self._write_checkpoint(
            lambda: self.manager().save(checkpoint_number=epoch + 1))
        fault_point("checkpoint", epoch + 1)  # tests: a crash between checkpoint and state
        previous = load(self.exp)
        current = (previous.checkpoint if previous is not None else None) or ""
        save_state(self.exp, self._state(epoch + 1, path))
        # preemption checkpoints are superseded; the one the fallback state names stays
        for old in Workdir(self.exp.workdir).preempted_checkpoint_files():
            if not os.path.basename(old).startswith(os.path.basename(current) + "."):
                os.remove(old)


def callback_state(state, callback):
    """The saved ``get_state()`` of ``callback`` (by class name) in the ``ResumeState``, or
    ``None``."""
    if state is None:
        return None
    return state.callback_state(type(callback).__name__)


def restore_callback(state, callback):
    """``callback.set_state`` from a resume ``state`` when it holds one; returns ``callback``."""
    saved = callback_state(state, callback)
    if saved is not None:
        callback.set_state(saved)
    return callback


def fault_point(where, epoch, step=None):
    """Fault injection for the crash tests: ``BIRDS_TF_CRASH_AT=checkpoint:2`` or
    ``step:2:3`` (epoch 2, step 3) kills the process there like ``kill -9`` would;
    ``sigterm:2:3`` sends the process a real SIGTERM at that step (a preemption);
    ``stall:2:3`` waits there (up to 5 minutes, holding the workdir) until a SIGTERM arrives."""
    spec = os.environ.get("BIRDS_TF_CRASH_AT")
    if not spec:
        return
    parts = spec.split(":")
    kind = "step" if parts[0] in ("sigterm", "stall") else parts[0]
    if kind != where or int(parts[1]) != epoch or (step is not None and int(parts[2]) != step):
        return
    if parts[0] == "sigterm":
        os.kill(os.getpid(), signal.SIGTERM)
    elif parts[0] == "stall":
        deadline = time.time() + 300
        while not preemption.requested() and time.time() < deadline:
            time.sleep(0.05)
    else:
        os._exit(137)
