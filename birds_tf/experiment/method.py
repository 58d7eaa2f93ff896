"""Method plug-ins for ``train_eval``: each says how its model is prepared, which callbacks its
PGD-AT run needs, and what it adds to ``results.json``.

Plug-ins register by name with a lazy "module:Class" path so importing the registry stays cheap.
"""
import importlib
import numbers
import os

import numpy as np

from birds_tf.metrics.flop_count import MethodCosts, PreStage
from birds_tf.utils import records

_REGISTRY = {
    "dense": "birds_tf.experiment.method:Dense",
    "fb": "birds_tf.experiment.flying_bird:FlyingBird",
    "fb_plus": "birds_tf.experiment.flying_bird:FlyingBirdPlus",
    "fb_plus_channel": "birds_tf.experiment.flying_bird_channel:FlyingBirdPlusChannel",
    "rb": "birds_tf.experiment.robust_bird:RobustBird",
    "random": "birds_tf.experiment.static_pruning:RandomPruning",
    "igq": "birds_tf.experiment.static_pruning:IGQPruning",
    "erk": "birds_tf.experiment.static_pruning:ERKPruning",
    "omp": "birds_tf.experiment.static_pruning:OMP",
    "prune_at_init": "birds_tf.experiment.static_pruning:PruneAtInit",
    "snip": "birds_tf.experiment.static_pruning:SNIP",
    "grasp": "birds_tf.experiment.static_pruning:GraSP",
    "synflow": "birds_tf.experiment.static_pruning:SynFlow",
    "small_dense": "birds_tf.experiment.static_pruning:SmallDense",
    "gmp": "birds_tf.experiment.static_pruning:GMP",
    "iwi": "birds_tf.experiment.iwi:InverseWeightsInheritance",
}


def register(name, target):
    """Add a plug-in: ``target`` is ``"module:Class"``, imported on first use."""
    _REGISTRY[name] = target


def names():
    return sorted(_REGISTRY)


def get(name):
    if name not in _REGISTRY:
        raise ValueError(f"Unknown method {name!r}; allowed: {names()}.")
    module, cls = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


class Method:
    """Base plug-in: a dense PGD-AT run with no extra callbacks."""

    name = "base"
    sparse = False
    # A plug-in whose preparation leaves a JSON record in the workdir (``stage1.json``, ...)
    # names it here: ``results`` returns it, and a resumed run reads it back instead of
    # repeating the pre-stage.
    info_file = None
    # On SIGTERM the main stage saves at the step boundary and resumes there; a plug-in whose
    # run_main rebuilds the model between epochs sets False (it resumes at the epoch start).
    mid_epoch_resume = True

    def __init__(self, config):
        self.config = config
        self.info = None
        if not self.sparse and config.sparsity:
            raise ValueError(f"Method {config.method!r} trains a dense model; target sparsity "
                             f"must be 0, got {config.sparsity!r}.")

    def prepare(self, exp, state):
        """Build the net (after any pre-training stage) and its trainer."""
        net = exp.build_net()
        return net, exp.make_trainer(net)

    def callbacks(self, exp, model, state):
        return []

    def run_main(self, exp, state, run_stage, verbose=None):
        """Prepare the model and run the protocol's main PGD-AT stage; returns the trainer that
        ``finish`` reports on.

        ``run_stage(exp, plugin, model, state, verbose)`` is ``train_eval.run_main_stage``
        (passed in because this module sits below ``train_eval``). The default runs it once; a
        method that rebuilds its model mid-run (``fb_plus_channel``) runs it in segments, each
        ending at a checkpoint so that a resumed run continues where it stopped.
        """
        _, model = self.prepare(exp, state)
        run_stage(exp, self, model, state, verbose)
        return model

    def save_info(self, exp, info):
        self.info = dict(info)
        records.write_json(exp.path(self.info_file), self.info)

    def load_info(self, exp):
        """The record (read from the workdir when this process did not make it); ``{}``."""
        if self.info is None and self.info_file and os.path.exists(exp.path(self.info_file)):
            self.info = records.read_json(exp.path(self.info_file))
        return dict(self.info or {})

    def results(self, exp, model):
        """Method-specific ``results.json`` fields (settings, tickets, events)."""
        return self.load_info(exp)

    def settings(self, exp=None):
        """The algorithm's effective settings: every gin-bindable knob with the value the run
        uses (defaults and resolved ``None``s included), so a reader of ``results.json``'s
        ``method_settings`` needs no ``operative_config.gin``. ``exp`` (when given) resolves
        values that depend on the data (steps per epoch); plain JSON values only."""
        return {}

    def settings_record(self, exp=None):
        """``settings`` as ``results.json``'s ``method_settings``, checked to be plain JSON
        (tuples become lists)."""
        return plain_settings(self.settings(exp))

    def costs(self, exp, model):
        """The ``MethodCosts`` (pre-stages, fine-tuning, mask updates) the FLOPs accounting
        adds to the main run; called after ``results``."""
        return MethodCosts()


class Dense(Method):
    name = "dense"


def plain_settings(value, key="method_settings"):
    """``value`` with tuples as lists and NumPy scalars as Python ones; any other object is a
    ``TypeError`` naming its key (a settings record must read back as the same JSON)."""
    if isinstance(value, dict):
        return {str(k): plain_settings(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_settings(v, key) for v in value]
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"{key} is {type(value).__name__} {value!r}, not a plain JSON value; "
                    "a plug-in's settings() must return numbers, strings, lists and dicts.")


def pre_stage_costs(info):
    """The dense pre-stage a plug-in's record names (``stage1_epochs_run``, ``stage1_pgd_steps``,
    the ``results.json`` keys) as ``MethodCosts``."""
    return MethodCosts(PreStage(info.get("stage1_epochs_run", 0), info.get("stage1_pgd_steps", 0)))
