"""Gradual magnitude pruning (Zhu & Gupta, 2017) as a Keras callback, with tfmot's semantics.

tfmot's ``prune_low_magnitude`` wrapper increments its ``pruning_step`` at the start of every
training step (so the first step is 1) and, in that step's forward pass, calls
``conditional_mask_update``: if ``schedule(step)`` says so, each wrapped layer's mask becomes
``|w| >= k-th largest |w|`` with ``k = max(round(n * (1 - s)), 1)`` -- a per-layer (not global)
magnitude mask. This callback does the same before every training batch, through
``schedules.tfmot_conditional_mask_update``, on every birds_tf masked layer (conv and dense
kernels, as tfmot prunes them), and also zeroes the pruned weights and their momentum (tfmot
re-masks the weights but leaves the optimizer's slots; here a pruned weight restarts from zero if
a later, lower sparsity revives it).

The step is the optimizer's iteration count + 1, so a resumed run continues the schedule.
"""
import keras
import numpy as np

from birds_tf.sparsity import masks as masks_lib
from birds_tf.sparsity import schedules

GMP_SCHEDULES = ("polynomial", "constant")


def make_schedule(kind, final_sparsity, begin_step, end_step, frequency, initial_sparsity=0.0,
                  power=3):
    """tfmot's ``PolynomialDecay`` or ``ConstantSparsity`` (re-implemented, tfmot-exact)."""
    if kind == "polynomial":
        return schedules.PolynomialDecay(initial_sparsity, final_sparsity, begin_step, end_step,
                                         power, frequency)
    if kind == "constant":
        return schedules.ConstantSparsity(final_sparsity, begin_step, end_step, frequency)
    raise ValueError(f"Unknown GMP schedule {kind!r}; allowed: {GMP_SCHEDULES}.")


class GradualMagnitudePruning(keras.callbacks.Callback):
    """Recompute every masked layer's mask on the schedule's pruning steps during ``fit``."""

    def __init__(self, schedule):
        super().__init__()
        if not callable(schedule):
            raise ValueError(f"schedule must be a PruningSchedule, got {schedule!r}.")
        self.schedule = schedule
        self.step = 0
        self.events = []
        self._layers = None

    def set_model(self, model):
        super().set_model(model)
        self._layers = masks_lib.require_masked_layers(model, "GradualMagnitudePruning")

    def _optimizer(self):
        opt = getattr(self.model, "optimizer", None)
        return getattr(opt, "inner_optimizer", opt)

    def on_train_begin(self, logs=None):
        optimizer = self._optimizer()
        if optimizer is not None:
            self.step = int(np.asarray(optimizer.iterations))

    def on_train_batch_begin(self, batch, logs=None):
        self.update(self.step + 1)

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1

    def update(self, step):
        """tfmot's ``conditional_mask_update`` at training step ``step`` (1-based)."""
        should_prune, sparsity = self.schedule(step)
        if not should_prune:
            return None
        optimizer = self._optimizer()
        active = total = 0
        for layer in self._layers:
            kernel = np.asarray(layer.kernel.numpy())
            old = np.asarray(layer.mask.numpy())
            mask, _ = schedules.tfmot_conditional_mask_update(kernel * old, old, self.schedule,
                                                              step)
            mask = mask.astype(np.float32)
            masks_lib.assign_mask_and_reset(layer, mask, mask, optimizer)
            active += int(mask.sum())
            total += mask.size
        event = {"step": int(step), "sparsity": float(sparsity),
                 "global_density": active / total}
        self.events.append(event)
        return event

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["gmp_updates"] = float(len(self.events))

    def get_state(self):
        return {"events": [dict(e) for e in self.events]}

    def set_state(self, state):
        self.events = list(state.get("events", []))


def gmp_schedule_steps(total_steps, begin_step=0, end_step=None, end_fraction=0.75,
                       frequency=100):
    """``(begin, end)``; ``end=None`` is the last pruning step at or before ``end_fraction`` of
    training, so the final sparsity is actually reached (tfmot only prunes on steps
    ``begin + j * frequency <= end``)."""
    if end_step is not None:
        return int(begin_step), int(end_step)
    target = int(end_fraction * total_steps)
    end = begin_step + max(0, (target - begin_step) // frequency) * frequency
    return int(begin_step), int(max(end, begin_step))
