"""Resume an interrupted run from its last completed epoch.

After every epoch a ``tf.train.Checkpoint`` of the trainer (weights, masks, optimizer momentum
and iteration count, hence the learning-rate schedule) is written, then ``state.json`` names it
together with the metric history, the best validation RA so far and the state of every callback
that has one (``get_state``/``set_state``). ``state.json`` is replaced atomically and only after
its checkpoint exists, so a crash at any moment leaves a consistent pair.
"""
import json
import os

import keras
import tensorflow as tf

from birds_tf.utils import records


def checkpoint_dir(exp):
    """The folder of the run's resume checkpoints and ``state.json``."""
    return exp.path("checkpoints", "resume")


def _state_path(exp):
    return os.path.join(checkpoint_dir(exp), "state.json")


def load(exp):
    path = _state_path(exp)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def in_main_stage(state):
    """True once the protocol's main PGD-AT run has started (pre-stages are then finished)."""
    return state is not None and state.get("stage") in ("main", "done")


def save_state(exp, state):
    records.atomic_write_text(_state_path(exp), json.dumps(state, indent=1, default=float))


def trainer_checkpoint(model):
    """A ``tf.train.Checkpoint`` of the trainer: weights, masks, optimizer state, attack RNG."""
    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    return tf.train.Checkpoint(model=model, optimizer=optimizer, rng=model.rng)


def restore_trainer(exp, model, state):
    trainer_checkpoint(model).restore(state["checkpoint"]).expect_partial()


def mark_done(exp):
    state = load(exp) or {}
    state["stage"] = "done"
    state["history"] = exp.history
    save_state(exp, state)


class ResumeCheckpoint(keras.callbacks.Callback):
    def __init__(self, exp, trainer, writer, stateful_callbacks=(), stage="main", extra=None):
        super().__init__()
        self.exp = exp
        self.trainer = trainer
        self.writer = writer
        self.stateful = [c for c in stateful_callbacks if hasattr(c, "get_state")]
        self.stage = stage
        self.extra = extra or {}
        self._manager = None

    def manager(self):
        if self._manager is None:
            self._manager = tf.train.CheckpointManager(trainer_checkpoint(self.trainer),
                                                       checkpoint_dir(self.exp),
                                                       max_to_keep=2)
        return self._manager

    def on_epoch_end(self, epoch, logs=None):
        path = self.manager().save(checkpoint_number=epoch + 1)
        fault_point("checkpoint", epoch + 1)  # tests: a crash between checkpoint and state
        best = max([r.get("val_ra", -1.0) for r in self.writer.history] or [-1.0])
        state = dict(self.extra)
        state.update(stage=self.stage, epoch=epoch + 1, checkpoint=path,
                     history=self.writer.history, best_val_ra=best,
                     callbacks={type(c).__name__: c.get_state() for c in self.stateful})
        previous = load(self.exp) or {}
        for key in ("pre_stages",):
            if key in previous and key not in state:
                state[key] = previous[key]
        save_state(self.exp, state)


def callback_state(state, callback):
    """The saved ``get_state()`` of ``callback`` (by class name), or ``None``."""
    if not state:
        return None
    return state.get("callbacks", {}).get(type(callback).__name__)


def restore_callback(state, callback):
    """``callback.set_state`` from a resume ``state`` when it holds one; returns ``callback``."""
    saved = callback_state(state, callback)
    if saved is not None:
        callback.set_state(saved)
    return callback


def fault_point(where, epoch, step=None):
    """Fault injection for the crash tests: ``BIRDS_TF_CRASH_AT=checkpoint:2`` or
    ``step:2:3`` (epoch 2, step 3) kills the process there like ``kill -9`` would."""
    spec = os.environ.get("BIRDS_TF_CRASH_AT")
    if not spec:
        return
    parts = spec.split(":")
    if parts[0] == where and int(parts[1]) == epoch and (
            step is None or int(parts[2]) == step):
        os._exit(137)
