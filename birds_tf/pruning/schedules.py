"""tfmot's ``ConstantSparsity`` and ``PolynomialDecay`` (the birds_tf re-derivation, parity-tested
against tfmot in ``tests/test_tfmot_parity.py``) and their (de)serialization."""
import numpy as np

from birds_tf.sparsity.schedules import ConstantSparsity, PolynomialDecay, PruningSchedule

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
