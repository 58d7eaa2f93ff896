"""The GMP baseline (Zhu & Gupta, 2017): tfmot's mask update driven over a paper model.

tfmot's ``prune_low_magnitude`` wrapper increments its ``pruning_step`` at the start of every
training step (so the first step is 1) and, in that step's forward pass, calls
``conditional_mask_update``: if ``schedule(step)`` says so, each wrapped layer's mask becomes
``|w| >= k-th largest |w|`` with ``k = max(round(n * (1 - s)), 1)`` -- a per-layer (not global)
magnitude mask. This callback does the same before every training batch, with the same code as
the pruning API (``masks.is_due`` / ``masks.new_mask``, the schedules of ``schedules.py``), on
every birds_tf masked layer of a model that ``train_eval`` builds (conv and dense kernels, as
tfmot prunes them).

Where it differs from ``UpdatePruningStep``, and why: a mask change here goes through
``sparsity.masks.assign_mask_and_reset``, which zeroes the pruned weights *and their momentum*
(tfmot zeroes the weights and leaves the optimizer's slots). Every birds_tf method changes masks
that way, so "pruned" means the same in every row of a table: the weight is zero and nothing
pushes it, and one revived by a later, lower sparsity restarts from zero as a grown weight does
in Flying Bird. The masked layers also pass no gradient to pruned weights (tfmot's wrapper passes
one, straight-through). The step is the optimizer's iteration count + 1, so a resumed run
continues the schedule.
"""
import keras
import numpy as np

from birds_tf.pruning import masks as pruning_masks
from birds_tf.pruning import schedules
from birds_tf.sparsity import masks as masks_lib

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
        if not pruning_masks.is_due(self.schedule, step):
            return None
        optimizer = self._optimizer()
        active = total = 0
        for layer in self._layers:
            kernel = np.asarray(layer.kernel.numpy())
            old = np.asarray(layer.mask.numpy())
            _, mask = pruning_masks.new_mask(kernel * old, self.schedule, step)
            mask = mask.astype(np.float32)
            masks_lib.assign_mask_and_reset(layer, mask, mask, optimizer)
            active += int(mask.sum())
            total += mask.size
        event = {"step": int(step), "sparsity": float(self.schedule(step)[1]),
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
