"""birds-tf: sparse adversarial training (Robust Bird, Flying Bird, Flying Bird+) in Keras 3.

The pieces a user takes into their own code are importable from here::

    import birds_tf
    net = birds_tf.sparsify(my_functional_model)          # or birds_tf.models.build(...)
    model = birds_tf.AdversarialModel(net)                # PGD-10 AT in train_step
    model.compile(optimizer=birds_tf.TorchSGD(0.1))
    model.fit(ds, epochs=..., callbacks=[birds_tf.DynamicSparsity(plus=True)])

The names load on first use (PEP 562), so the modules that only read JSON and CSV
(``birds_tf.metrics.table``, ``birds_tf.utils.workdir``; ``launch.report``) start without
TensorFlow. ``import birds_tf`` alone therefore registers no Keras class: call
``birds_tf.register_keras_objects()`` before ``keras.models.load_model`` on a birds-tf model,
or load it with ``birds_tf.utils.workdir.load_model`` (a workdir) or
``birds_tf.utils.records.load_model`` (a ``.keras`` file), which import the modules the file
names.

This module is the public face above every package: birds-tf's own modules never import it
(``tests/test_layering.py``), they import the module that holds a name.

``__version__`` is the package's one version: the wheel reads it (pyproject.toml) and
CHANGELOG.md's newest entry must match it (tests/test_packaging.py).
"""
import importlib

from birds_tf.utils import machine as _machine

__version__ = "0.1.0"

# Before anything imports TensorFlow: its oneDNN kernels on every x86 CPU, not only on those with
# AVX-512 VNNI (birds_tf.utils.machine says why: 3.3x on an AVX2 CPU's PGD-AT step). A user
# who imports tensorflow first sets TF_ENABLE_ONEDNN_OPTS=1 themselves; =0 is respected.
_machine.enable_onednn()

# name -> (module, attribute or None for the module itself)
_LAZY = {
    "attacks": ("birds_tf.attacks", None),
    "data": ("birds_tf.data", None),
    "evaluation": ("birds_tf.evaluation", None),
    "export": ("birds_tf.export", None),
    "flops": ("birds_tf.flops", None),
    "layers": ("birds_tf.layers", None),
    "models": ("birds_tf.models", None),
    "plots": ("birds_tf.plots", None),
    "pruning": ("birds_tf.pruning", None),
    "sparsity": ("birds_tf.sparsity", None),
    "training": ("birds_tf.training", None),
    "sparsify": ("birds_tf.sparsity.convert", "sparsify"),
    "DynamicSparsity": ("birds_tf.sparsity.flying_bird", "DynamicSparsity"),
    "AdversarialModel": ("birds_tf.training.adversarial", "AdversarialModel"),
    "AttackConfig": ("birds_tf.training.adversarial", "AttackConfig"),
    "TorchSGD": ("birds_tf.training.optimizer", "TorchSGD"),
    "MultiStepLR": ("birds_tf.training.optimizer", "MultiStepLR"),
}

__all__ = list(_LAZY) + ["register_keras_objects"]


def register_keras_objects():
    """Import the modules whose Keras classes (masked layers, the normaliser, the pruning
    wrappers, TorchSGD, AdversarialModel) ``keras.models.load_model`` must find by name."""
    for module_name in ("birds_tf.layers", "birds_tf.pruning.layers",
                        "birds_tf.training.optimizer", "birds_tf.training.adversarial"):
        importlib.import_module(module_name)


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'birds_tf' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
