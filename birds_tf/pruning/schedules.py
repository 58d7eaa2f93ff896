"""tfmot's pruning schedules, ``ConstantSparsity`` and ``PolynomialDecay``, without tfmot.

tfmot 0.8.1 cannot wrap Keras 3 models and importing it flips ``TF_USE_LEGACY_KERAS`` for the
whole process, so birds_tf never imports it. These classes reproduce, in NumPy, what
``pruning_schedule.ConstantSparsity`` / ``PolynomialDecay`` compute -- including their float32
arithmetic -- and ``tests/test_tfmot_parity.py`` checks them bit for bit against tfmot run in a
subprocess. The one set of schedules: the pruning API (``birds_tf.pruning``) and the GMP
baseline (``pruning/gradual.py``) both use them; ``masks.py`` holds the mask update.
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


SCHEDULE_CLASSES = {"ConstantSparsity": ConstantSparsity, "PolynomialDecay": PolynomialDecay}


def serialize(schedule):
    """``{"class_name": ..., "config": {...}}``, tfmot's format, with plain Python numbers (the
    tutorial's ``end_step`` is a NumPy integer, which JSON cannot hold)."""
    config = schedule.get_config()
    return {"class_name": config["class_name"],
            "config": {k: v.item() if isinstance(v, np.generic) else v
                       for k, v in config["config"].items()}}


def deserialize(config):
    """A schedule from ``serialize``'s dict (or the schedule itself)."""
    if isinstance(config, PruningSchedule):
        return config
    name = config.get("class_name") if isinstance(config, dict) else None
    if name not in SCHEDULE_CLASSES:
        raise ValueError(f"Unknown pruning schedule {config!r}; allowed: "
                         f"{sorted(SCHEDULE_CLASSES)}.")
    return SCHEDULE_CLASSES[name].from_config(config["config"])


def validate(schedule):
    if not isinstance(schedule, PruningSchedule):
        raise ValueError("pruning_schedule must be a birds_tf.pruning.ConstantSparsity or "
                         f"PolynomialDecay, got {schedule!r}.")
    return schedule


__all__ = ["ConstantSparsity", "PolynomialDecay", "PruningSchedule", "serialize", "deserialize"]
