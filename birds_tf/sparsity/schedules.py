"""tfmot's pruning schedules and magnitude mask, re-implemented without importing tfmot.

tfmot 0.8.1 cannot wrap Keras 3 models and importing it flips ``TF_USE_LEGACY_KERAS`` for the
whole process, so birds_tf never imports it. These functions reproduce, in NumPy, what
``pruning_schedule.ConstantSparsity`` / ``PolynomialDecay`` and ``pruning_impl.Pruning`` compute
-- including their float32 arithmetic -- and ``tests/test_tfmot_parity.py`` checks them bit for
bit against tfmot run in a subprocess.
"""
import numpy as np

_F32 = np.float32


class PruningSchedule:
    """``(should_prune, sparsity) = schedule(step)``, as tfmot's base class."""

    def _should_prune_in_step(self, step, begin_step, end_step, frequency):
        # Pruning happens in [begin_step, end_step] (end_step < 0: forever), every
        # ``frequency`` steps counted from begin_step (floor modulo, as tf.math.floormod).
        in_range = step >= begin_step and (step <= end_step or end_step < 0)
        return bool(in_range and (step - begin_step) % frequency == 0)

    @staticmethod
    def _validate_step(begin_step, end_step, frequency, allow_negative_1):
        if begin_step < 0:
            raise ValueError(f"begin_step should be >= 0, got {begin_step!r}.")
        if not allow_negative_1 and end_step == -1:
            raise ValueError("end_step cannot be -1.")
        if end_step != -1:
            if end_step < 0:
                raise ValueError(f"end_step can be -1 or >= 0, got {end_step!r}.")
            if end_step < begin_step:
                raise ValueError(f"begin_step ({begin_step!r}) should be <= end_step "
                                 f"({end_step!r}) if end_step != -1.")
        if frequency <= 0:
            raise ValueError(f"frequency should be > 0, got {frequency!r}.")

    @staticmethod
    def _validate_sparsity(sparsity, name):
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"{name} must be in range [0,1), got {sparsity!r}.")

    @staticmethod
    def _step(step):
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
            step = np.asarray(step)
            if step.shape != () or not np.issubdtype(step.dtype, np.integer):
                raise ValueError(f"step must be an integer, got {step!r}.")
        return int(step)

    def get_config(self):
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class ConstantSparsity(PruningSchedule):
    """Constant ``target_sparsity`` every ``frequency`` steps in ``[begin_step, end_step]``."""

    def __init__(self, target_sparsity, begin_step, end_step=-1, frequency=100):
        self.target_sparsity = target_sparsity
        self.begin_step = begin_step
        self.end_step = end_step
        self.frequency = frequency
        self._validate_step(begin_step, end_step, frequency, True)
        self._validate_sparsity(target_sparsity, "target_sparsity")

    def __call__(self, step):
        step = self._step(step)
        return (self._should_prune_in_step(step, self.begin_step, self.end_step, self.frequency),
                _F32(self.target_sparsity))

    def get_config(self):
        return {"class_name": type(self).__name__,
                "config": {"target_sparsity": self.target_sparsity,
                           "begin_step": self.begin_step, "end_step": self.end_step,
                           "frequency": self.frequency}}


class PolynomialDecay(PruningSchedule):
    """``s = final + (initial - final) * (1 - p) ** power``, ``p = clip((t - b) / (e - b), 0, 1)``.

    Evaluated in float32 step by step exactly as tfmot's graph: the step difference is cast to
    float32 and divided by ``float32(end - begin)``; ``initial - final`` is a Python (float64)
    difference rounded once to float32; the power is evaluated as float64 and rounded, which
    matches TensorFlow's float32 ``pow`` (checked at every step by the parity test).
    """

    def __init__(self, initial_sparsity, final_sparsity, begin_step, end_step, power=3,
                 frequency=100):
        self.initial_sparsity = initial_sparsity
        self.final_sparsity = final_sparsity
        self.power = power
        self.begin_step = begin_step
        self.end_step = end_step
        self.frequency = frequency
        self._validate_step(begin_step, end_step, frequency, False)
        self._validate_sparsity(initial_sparsity, "initial_sparsity")
        self._validate_sparsity(final_sparsity, "final_sparsity")

    def sparsity(self, step):
        step = self._step(step)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = _F32(step - self.begin_step) / _F32(self.end_step - self.begin_step)
        p = np.minimum(_F32(1.0), np.maximum(_F32(0.0), ratio))
        # tf.math.pow on float32 agrees with the float64 power rounded once to float32
        # (glibc powf); NumPy's float32 power is off by an ulp on some inputs.
        decay = _F32(np.float64(_F32(1.0) - p) ** float(self.power))
        return _F32(_F32(self.initial_sparsity - self.final_sparsity) * decay
                    + _F32(self.final_sparsity))

    def __call__(self, step):
        step = self._step(step)
        return (self._should_prune_in_step(step, self.begin_step, self.end_step, self.frequency),
                self.sparsity(step))

    def get_config(self):
        return {"class_name": type(self).__name__,
                "config": {"initial_sparsity": self.initial_sparsity,
                           "final_sparsity": self.final_sparsity, "power": self.power,
                           "begin_step": self.begin_step, "end_step": self.end_step,
                           "frequency": self.frequency}}


def tfmot_keep_count(size, sparsity):
    """``max(round(float32(size) * (1 - sparsity)), 1)`` in float32, round half to even."""
    kept = _F32(size) * (_F32(1.0) - _F32(sparsity))
    return int(max(np.round(kept), _F32(1.0)))


def tfmot_magnitude_mask(weights, sparsity, return_threshold=False):
    """The mask ``pruning_impl.Pruning._update_mask`` assigns (block_size (1, 1), no m-by-n).

    tfmot sorts ``|w|`` descending with ``top_k``, takes the k-th value as the threshold with
    ``k = max(round(size * (1 - sparsity)), 1)`` and keeps ``|w| >= threshold`` (or-ed with a
    one-hot at the k-th position, which is always already kept). Every weight tied with the
    threshold is therefore kept, so the mask can keep more than k weights -- e.g. all of them
    once more than ``size - k`` weights are exactly zero. The block-pooling path (block_size
    other than (1, 1), rank-2 only) is not reproduced.
    """
    w = np.asarray(weights)
    if not np.issubdtype(w.dtype, np.floating):
        w = w.astype(np.float32)
    if w.size == 0:
        raise ValueError("Cannot compute a mask for an empty weight tensor.")
    s = float(sparsity)
    if not 0.0 <= s <= 1.0 or np.isnan(s):
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity!r}.")
    abs_w = np.abs(w)
    k = tfmot_keep_count(abs_w.size, s)
    threshold = np.sort(abs_w.ravel())[::-1][k - 1]
    mask = (abs_w >= threshold).astype(w.dtype)
    if return_threshold:
        return mask, threshold.astype(w.dtype)
    return mask


def tfmot_conditional_mask_update(weights, mask, schedule, step):
    """``Pruning.conditional_mask_update`` for one weight: recompute only on a pruning step.

    Returns ``(new_mask, updated)``; off-schedule steps keep ``mask`` unchanged, as tfmot's
    ``tf.cond(should_prune, update, no_op)``.
    """
    should_prune, sparsity = schedule(step)
    if not should_prune:
        return np.asarray(mask), False
    return tfmot_magnitude_mask(weights, sparsity), True
