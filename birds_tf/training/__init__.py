"""The Keras engine, free of gin: adversarial training, the optimizer, SWA and KD.

The names below are the public face; they load on first use (PEP 562), as in ``birds_tf``.
The other modules here (``epoch_eval``, ``callbacks``, ``progress``, ``resume``) serve
``birds_tf.experiment`` and may change without notice.
"""
import importlib

# name -> (module, attribute or None for the module itself)
_LAZY = {
    "AdversarialModel": ("birds_tf.training.adversarial", "AdversarialModel"),
    "AttackConfig": ("birds_tf.training.adversarial", "AttackConfig"),
    "TorchSGD": ("birds_tf.training.optimizer", "TorchSGD"),
    "MultiStepLR": ("birds_tf.training.optimizer", "MultiStepLR"),
    "StochasticWeightAveraging": ("birds_tf.training.swa", "StochasticWeightAveraging"),
    "DistillationModel": ("birds_tf.training.distillation", "DistillationModel"),
    "kd_loss": ("birds_tf.training.distillation", "kd_loss"),
    "load_teacher": ("birds_tf.training.distillation", "load_teacher"),
}

__all__ = list(_LAZY)


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'birds_tf.training' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
