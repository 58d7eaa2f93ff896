"""Method plug-ins for ``train_eval``: each says how its model is prepared, which callbacks its
PGD-AT run needs, and what it adds to ``results.json``.

The registry is ``birds_tf.metrics.methods``: one ``MethodSpec`` (name, display name,
``"module:Class"``) per method, imported on first use so the registry stays cheap. A plug-in
class takes its ``name`` and ``display_name`` from its spec when it is defined.
"""
import dataclasses
import importlib
import numbers
import os

import numpy as np

from birds_tf.metrics import methods as catalogue
from birds_tf.metrics.flop_count import MethodCosts, PreStage
from birds_tf.utils import records


def register(name, target, display_name=None):
    """Add a plug-in of your own: ``target`` is ``"module:Class"``, imported on first use;
    ``display_name`` (``None``: ``name``) is what tables and legends print."""
    catalogue.declare(catalogue.MethodSpec(name, target, display_name))


def names():
    """Every method ``train_eval.method`` accepts, sorted."""
    return catalogue.names()


def get(name):
    """The plug-in class of method ``name``."""
    spec = catalogue.spec(name)
    cls = getattr(importlib.import_module(spec.module), spec.class_name)
    if "name" not in vars(cls):  # declared after its class was defined
        cls.name, cls.display_name = name, spec.display_name or name
    return cls


def plugin_modules():
    """The modules of every declared plug-in (importing them registers their gin names)."""
    return list(dict.fromkeys(s.module for s in catalogue.specs()))


class Method:
    """Base plug-in: a dense PGD-AT run with no extra callbacks."""

    # Identity, from the method's ``MethodSpec`` (``__init_subclass__``): the name
    # ``train_eval.method`` takes and ``results.json`` records, and the tables' display name.
    name = "base"
    display_name = "base"
    sparse = False
    # A plug-in whose preparation leaves a JSON record in the workdir (``stage1.json``, ...)
    # names it here: ``results`` returns it, and a resumed run reads it back instead of
    # repeating the pre-stage.
    info_file = None
    # On SIGTERM the main stage saves at the step boundary and resumes there; a plug-in that
    # rebuilds the model between epochs sets False (it resumes at the epoch start).
    mid_epoch_resume = True
    # True: a callback of the plug-in may stop ``fit`` after an epoch (``stop_training``) for
    # ``train_eval.run_main`` to rebuild the model (``rebuild_plan``, ``rebuild``) and go on.
    rebuilds_model = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        target = f"{cls.__module__}:{cls.__qualname__}"
        for spec in catalogue.specs():
            if spec.plugin == target:
                cls.name, cls.display_name = spec.name, spec.display_name or spec.name

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
        """The protocol's main PGD-AT stage; returns the trainer that ``finish`` reports on.

        ``check_run``, then ``run_stage(exp, self, state, verbose)``: ``train_eval.run_main``
        (passed in because this module sits below ``train_eval``), which owns the loop of
        segments for a plug-in that rebuilds its model. Override the hooks, not this.
        """
        self.check_run(exp)
        return run_stage(exp, self, state, verbose)

    def check_run(self, exp):
        """Refuse a run this plug-in cannot do with ``exp``'s add-ons (before any training)."""

    # -- a model rebuilt between epochs (``train_eval.run_main`` owns the loop) ----------------
    def rebuild_plan(self, exp, model, state):
        """What to rebuild before training on from ``state``, or ``None`` (the default: never).

        Called by ``train_eval.run_main`` for a plug-in with ``rebuilds_model`` whenever the main
        stage is about to (re)start mid-run: after one of its callbacks stopped ``fit`` at an
        epoch's end (that epoch's checkpoint and ``state.json`` already written), and on a
        resume. ``model`` is the trainer ``prepare`` built for ``state``, not yet restored.
        """
        return None

    def rebuild(self, exp, model, plan):
        """The ``Rebuilt`` trainer for ``plan``: ``model`` holds the state's checkpoint (restored
        by ``train_eval``); weights, optimizer state and the attack RNG are the plug-in's to
        carry over. ``train_eval`` checkpoints the result and updates the resume record."""
        raise NotImplementedError(f"{type(self).__name__} plans a rebuild but has no rebuild().")

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


@dataclasses.dataclass
class Rebuilt:
    """A plug-in's rebuilt trainer and what ``train_eval`` records with it.

    Args:
      trainer: the compiled trainer to continue with (its checkpoint becomes the resume point).
      callback_states: ``{callback class name: {key: value}}`` entries to set in the resume
        record's saved callback states (the rebuilt structure, so a resume rebuilds it too).
      label: the rebuild's name for fault injection (``BIRDS_TF_CRASH_AT=<label>:<epoch>``).
    """

    trainer: object
    callback_states: dict = dataclasses.field(default_factory=dict)
    label: str = "rebuild"


class Dense(Method):
    """The dense baseline: ``Method`` as it is."""


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
