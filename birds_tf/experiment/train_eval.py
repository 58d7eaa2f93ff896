"""The one gin-configurable experiment: build data and model, run a method's PGD-AT, report.

Every method (dense, Flying Bird(+), Robust Bird, static baselines) is a plug-in from
``birds_tf.experiment.method``; this function owns what they share: validation before work, the
workdir contract (``operative_config.gin``, ``config.json``, ``metrics.csv``, TensorBoard logs,
best/final models, a resumable checkpoint, ``results.json``) and the paper's evaluation protocol.

``Config`` is the one source of the run's settings and their defaults. Gin binds its fields as
``train_eval.<field>`` (``Config`` is registered under that name), so ``train_eval`` itself only
takes what is not a setting: the workdir, the strategy and the console verbosity.
"""
import dataclasses
import json
import logging
import os
import time

import gin
import keras
import tensorflow as tf
from gin import config_parser

from birds_tf import data as data_lib
from birds_tf import models as models_lib
from birds_tf.attacks import pgd
from birds_tf.experiment import method as method_lib
from birds_tf.experiment import smoothing
from birds_tf.metrics import flop_count, protocol
from birds_tf.sparsity import masks as masks_lib
from birds_tf.training import callbacks as cb
from birds_tf.training import epoch_eval, preemption, progress, resume
from birds_tf.training.adversarial import BN_MODES, AdversarialModel, AttackConfig
from birds_tf.training.optimizer import MultiStepLR, TorchSGD
from birds_tf.utils import checks
from birds_tf.utils import workdir as workdir_lib

MIXED_POLICIES = (None, "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass
class Config:
    """Everything ``train_eval`` was asked to do, validated before any work starts.

    Gin binds every field as ``train_eval.<field>`` (e.g. ``train_eval.epochs = 200``).

    Args:
      method: the plug-in (``experiment.method.names()``): ``'dense'``, ``'fb'``, ``'fb_plus'``,
        ``'rb'``, the static baselines, ``'gmp'``, ``'iwi'``.
      dataset, data_dir: the data (``birds_tf.data.DATASETS``) and where its files are.
      arch, arch_kwargs: the architecture (``birds_tf.models.names()``) and its options.
      epochs, batch_size, eval_batch_size: the protocol's PGD-AT run.
      lr, momentum, weight_decay, milestones, gamma: SGD with a multi-step schedule.
      train_eps, train_step_size, train_steps, attack_bn_mode: the training PGD attack.
      eval_eps, eval_step_size, eval_steps: the evaluation PGD attack (PGD-20).
      sparsity: the target sparsity of sparse methods (0 for dense ones).
      seed: the run's seed (data split, init, masks, attacks).
      max_train, max_eval: truncate the splits (smoke runs).
      jit_compile, mixed_precision: XLA and the Keras mixed-precision policy.
      rgg_eval: measure the train RA of the final model for the robust generalization gap.
      augment: training augmentation (False for the CPU-size offline scale,
        gin/offline/offline.gin).
      final_test: after training, evaluate the best and final models on the whole test split
        (``max_eval`` not applied) with PGD-``final_test_steps`` at ``eval_eps``; the results'
        RA/SA best/final and the RGG (train RA with the same attack) then come from it, and the
        per-epoch figures are kept as ``epoch_*``. For scales whose per-epoch evaluation is
        cut short (gin/offline/offline.gin); the paper's protocol evaluates the whole split anyway.
      final_test_steps, final_test_step_size: that attack (``None`` step: ``eval_step_size``).
    """

    method: str = "dense"
    dataset: str = "digits"
    data_dir: str = None
    arch: str = "preact_resnet18"
    arch_kwargs: dict = None
    epochs: int = 200
    batch_size: int = 128
    eval_batch_size: int = None
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple = (100, 150)
    gamma: float = 0.1
    train_eps: float = 8 / 255
    train_step_size: float = 2 / 255
    train_steps: int = 10
    attack_bn_mode: str = "train"
    eval_eps: float = 8 / 255
    eval_step_size: float = 2 / 255
    eval_steps: int = 20
    sparsity: float = 0.0
    seed: int = 1
    max_train: int = None
    max_eval: int = None
    jit_compile: bool = False
    mixed_precision: str = None
    rgg_eval: bool = True
    augment: bool = True
    final_test: bool = False
    final_test_steps: int = 20
    final_test_step_size: float = None

    def __post_init__(self):
        # Gin and JSON hand lists; the settings are plain values either way.
        self.arch_kwargs = dict(self.arch_kwargs or {})
        if isinstance(self.milestones, list):
            self.milestones = tuple(self.milestones)

    def validate(self):
        if self.method not in method_lib.names():
            raise ValueError(f"Unknown method {self.method!r}; allowed: "
                             f"{method_lib.names()}.")
        if self.dataset not in data_lib.DATASETS:
            raise ValueError(f"Unknown dataset {self.dataset!r}; allowed: {data_lib.DATASETS}.")
        if self.arch not in models_lib.names():
            raise ValueError(f"Unknown architecture {self.arch!r}; allowed: "
                             f"{models_lib.names()}.")
        checks.integer("epochs", self.epochs)
        checks.integer("batch_size", self.batch_size)
        if self.eval_batch_size is not None:
            checks.integer("eval_batch_size", self.eval_batch_size)
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}.")
        self.milestones = checks.milestones("Learning-rate", self.milestones, self.epochs,
                                            "epochs")
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"Target sparsity must be in [0, 1), got {self.sparsity!r} "
                             "(0.8 means 80% of the weights pruned).")
        if self.attack_bn_mode not in BN_MODES:
            raise ValueError(f"attack_bn_mode must be one of {BN_MODES}, got "
                             f"{self.attack_bn_mode!r}.")
        if not isinstance(self.augment, bool):
            raise ValueError(f"augment must be True or False, got {self.augment!r}.")
        if not isinstance(self.final_test, bool):
            raise ValueError(f"final_test must be True or False, got {self.final_test!r}.")
        if self.final_test:
            if not self.rgg_eval:
                raise ValueError("final_test = True measures the RGG with the final attack; it "
                                 "needs rgg_eval = True (got False).")
            pgd.validate(self.eval_eps, self.final_test_step(), self.final_test_steps)
        if self.mixed_precision not in MIXED_POLICIES:
            raise ValueError(f"mixed_precision must be one of {MIXED_POLICIES}, got "
                             f"{self.mixed_precision!r}.")
        # Attack settings raise with the offending value themselves; PGD-AT needs >= 1 step.
        pgd.validate(self.train_eps, self.train_step_size, self.train_steps)
        pgd.validate(self.eval_eps, self.eval_step_size, self.eval_steps)
        self.train_attack()
        self.eval_attack()
        return self

    def train_attack(self):
        return AttackConfig(self.train_eps, self.train_step_size, self.train_steps,
                            True, self.attack_bn_mode)

    def eval_attack(self):
        return AttackConfig(self.eval_eps, self.eval_step_size, self.eval_steps, True, "eval")

    def final_test_step(self):
        return self.eval_step_size if self.final_test_step_size is None else \
            self.final_test_step_size

    def final_test_attack(self):
        return AttackConfig(self.eval_eps, self.final_test_step(), self.final_test_steps, True,
                            "eval")

    def as_dict(self):
        """Plain JSON-able values (the ``config.json`` record)."""
        out = dataclasses.asdict(self)
        out["milestones"] = list(self.milestones)
        return out

    @classmethod
    def from_dict(cls, values):
        """A ``Config`` from recorded values; names it does not know are ignored (a newer or
        older record), unset fields keep their defaults."""
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in fields})

    @classmethod
    def from_workdir(cls, workdir):
        """The settings a ``launch.train`` workdir was trained with.

        Read from ``config.json`` (written at train time); workdirs from before it existed are
        read from ``operative_config.gin`` (else ``config.gin``) with gin's own parser, taking
        the ``train_eval.*`` bindings with literal values.
        """
        files = workdir_lib.Workdir(workdir_lib.check(workdir, ()))
        if os.path.exists(files.config_json):
            return cls.from_dict(files.read_config())
        path = files.operative_config_gin
        if not os.path.exists(path):
            workdir_lib.check(workdir, (files.CONFIG_GIN,))
            path = files.config_gin
        with open(path) as f:
            return cls.from_dict(_train_eval_bindings(f.read()))


# ``train_eval.<field>`` in gin: the registered constructor of ``Config``.
_ConfigFromGin = gin.external_configurable(Config, "train_eval",
                                           module="birds_tf.experiment.train_eval")


class _LiteralsOnly(config_parser.ParserDelegate):
    """Parses a gin file without touching gin's global state; references read as ``None``."""

    def configurable_reference(self, scoped_name, evaluate):
        return None

    def macro(self, name):
        return None


def _train_eval_bindings(text):
    values = {}
    for statement in config_parser.ConfigParser(text, _LiteralsOnly()):
        if not isinstance(statement, config_parser.BindingStatement) or statement.scope:
            continue
        if statement.selector.split(".")[-1] == "train_eval" and statement.value is not None:
            values[statement.arg_name] = statement.value
    return values


def configured():
    """The ``Config`` gin's current bindings give (``train_eval.*``), validated."""
    return _ConfigFromGin().validate()


class Experiment:
    """Shared state handed to method plug-ins: data, the model factory, and the trainer."""

    def __init__(self, config, workdir, strategy, splits, smooth=None, trainer_cls=None,
                 verbose=None):
        """
        Args:
          config: the validated ``Config``.
          workdir: where the run writes (created by ``train_eval``).
          strategy: the ``tf.distribute`` strategy models are built under.
          splits: the data (``birds_tf.data.get_dataset``).
          smooth: the KD / SWA add-ons (``smoothing.Smoothing``); ``None``: neither.
          trainer_cls: the main stage's trainer (distilling when KD is on); ``None``: the plain
            ``AdversarialModel``.
          verbose: the console: 0 silent, 1 or ``None`` one progress line per epoch (pre-stages
            included), 2 also Keras' full line of every log entry.
        """
        self.config = config
        self.verbose = verbose
        self.workdir = workdir
        self.files = workdir_lib.Workdir(workdir)  # every file of the run folder, named once
        self.strategy = strategy
        self.splits = splits
        self.history = []
        self.smoothing = smooth if smooth is not None else smoothing.Smoothing.disabled()
        self.trainer_cls = trainer_cls or AdversarialModel

    # Model and trainer factories, so multi-stage methods build fresh ones the same way.
    def build_net(self, **overrides):
        kwargs = dict(num_classes=self.splits.num_classes, input_shape=self.splits.input_shape,
                      mean=self.splits.mean, std=self.splits.std)
        kwargs.update(self.config.arch_kwargs)
        kwargs.update(overrides)
        with self.strategy.scope():
            return models_lib.build(self.config.arch, **kwargs)

    def make_trainer(self, net, attack=None, lr=None, milestones=None, epochs=None,
                     lr_schedule=None, trainer_cls=None):
        """``trainer_cls`` defaults to ``self.trainer_cls`` (the main stage's: distilling when KD
        is on); pre-stages pass ``AdversarialModel``."""
        c = self.config
        trainer_cls = trainer_cls or self.trainer_cls
        with self.strategy.scope():
            model = trainer_cls(net, attack or c.train_attack(), seed=c.seed)
            schedule = lr_schedule or MultiStepLR(
                lr or c.lr, c.milestones if milestones is None else milestones,
                self.splits.steps_per_epoch, c.gamma)
            optimizer = TorchSGD(schedule, momentum=c.momentum, l2=c.weight_decay)
            if c.mixed_precision == "mixed_float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            model.compile(optimizer=optimizer, jit_compile=c.jit_compile)
        return model

    def path(self, *parts):
        return os.path.join(self.workdir, *parts)


def train_eval(workdir, strategy=None, verbose=None, config=None):
    """Train one method with PGD-AT into ``workdir`` and return the results dict.

    Args:
      workdir: the run's folder (see the module docstring for what it holds).
      strategy: a ``tf.distribute`` strategy (default: the current one).
      verbose: the console: 0 silent, 1 or ``None`` one progress line per epoch, 2 also Keras'
        full line of every log entry (the detail).
      config: a ``Config``; ``None`` takes gin's ``train_eval.*`` bindings.
    """
    config = configured() if config is None else config.validate()
    plugin = method_lib.get(config.method)(config)  # validates its own settings
    smooth = smoothing.Smoothing.from_gin(config)  # KD / SWA settings and teacher paths
    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy(config.mixed_precision)
    splits = data_lib.get_dataset(config.dataset, batch_size=config.batch_size,
                                  data_dir=config.data_dir, seed=config.seed,
                                  eval_batch_size=config.eval_batch_size,
                                  max_train=config.max_train, max_eval=config.max_eval,
                                  augment=config.augment)
    os.makedirs(workdir, exist_ok=True)
    workdir_lib.Workdir(workdir).write_config(config.as_dict())
    exp = Experiment(config, workdir, strategy, splits, smooth,
                     smooth.trainer_cls(splits, strategy),  # loads and checks teachers
                     verbose=verbose)
    start = time.time()
    finished = _finished_results(exp)
    if finished is not None:  # a finished run's results are never overwritten
        logging.info("%s already holds a finished run; its results are unchanged.", workdir)
        return finished
    state = resume.load_checked(exp)  # falls back past a corrupt state or checkpoint
    model = plugin.run_main(exp, state, run_main, verbose)
    return finish(exp, plugin, model, time.time() - start)


def run_main(exp, plugin, state, verbose=None):
    """The main stage (``Method.run_main`` calls it); returns the trainer ``finish`` reports on.

    A plug-in with ``rebuilds_model`` runs it in segments: its callback stops ``fit`` after an
    epoch (whose checkpoint and ``state.json`` are then written), the plug-in says how to rebuild
    (``rebuild_plan``, ``rebuild``), and this loop checkpoints the rebuilt trainer, points the
    resume record at it (``resume.save_rebuilt``) and trains on, until the last epoch. A resumed
    run enters the same loop, so a crash before or after a rebuild continues as if none came.
    """
    while True:
        _, model = plugin.prepare(exp, state)
        model = _rebuild(exp, plugin, model, state)
        run_main_stage(exp, plugin, model, state, verbose)
        if not plugin.rebuilds_model:
            return model
        state = resume.load(exp)
        if int(state.epoch or 0) >= exp.config.epochs:
            return model


def _rebuild(exp, plugin, model, state):
    """``model``, or the plug-in's rebuild of it when one is due mid-run (then checkpointed and
    made the resume point)."""
    if not (plugin.rebuilds_model and resume.in_main_stage(state)
            and int(state.epoch) < exp.config.epochs):
        return model
    plan = plugin.rebuild_plan(exp, model, state)
    if plan is None:
        return model
    resume.restore_trainer(exp, model, state)
    rebuilt = plugin.rebuild(exp, model, plan)
    resume.save_rebuilt(exp, rebuilt.trainer, state, rebuilt.callback_states)
    resume.fault_point(rebuilt.label, int(state.epoch))  # tests: a crash right after
    return rebuilt.trainer


def _finished_results(exp):
    """``results.json`` when it loads; a torn one is moved aside (the rerun writes it anew from
    the resume state, which holds every epoch)."""
    path = exp.files.results_json
    if not os.path.exists(path):
        return None
    try:
        return exp.files.read_results()
    except (OSError, ValueError) as e:
        aside = f"{path}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}"
        os.replace(path, aside)
        logging.warning("%s does not load (%s); moved it to %s and recomputing the results "
                        "from the resume state.", path, e, aside)
        return None


# The main stage's callbacks, in the order Keras calls them. They share one ``logs`` dict per
# epoch, so the order is a contract:
#   guard       stops on a non-finite loss before anything of the epoch is saved;
#   evaluation  fills logs with val/test SA, RA and robust loss (Flying Bird+ reads
#               ``val_robust_loss``, the writers read all of them), so it precedes every reader;
#   method      the plug-in's callbacks (mask updates, GMP), which may add log entries;
#   smoothing   SWA, after the method (it averages the weights the method left);
#   metrics     the ``metrics.csv`` row (sees every entry above);
#   models      best/final ``.keras`` files (by ``val_ra``);
#   tensorboard the same logs as event files;
#   resume      the checkpoint and ``state.json`` (with the metrics writer's history);
#   masks       per-epoch masks of sparse runs;
#   progress    the console's line (reads what every callback above put in logs); none at
#               ``verbose=0``.
CALLBACK_SLOTS = ("guard", "evaluation", "method", "smoothing", "metrics", "models",
                  "tensorboard", "resume", "masks", "progress")


def main_stage_callbacks(exp, plugin, model, state, best_val_ra=-1.0):
    """``{slot: [callbacks]}`` for ``CALLBACK_SLOTS`` and the flat list in slot order."""
    c = exp.config
    method = plugin.callbacks(exp, model, state)
    smooth = exp.smoothing.callbacks(exp, model, state)
    writer = cb.MetricsWriter(exp.files.metrics_csv, exp.history)
    partial = state.partial if resume.in_main_stage(state) else None
    slots = {
        "guard": [cb.NonFiniteLossGuard(exp, partial)],
        "evaluation": [cb.EpochEvaluation(exp.splits, c.eval_attack(), exp.strategy,
                                          seed=c.seed)],
        "method": method,
        "smoothing": smooth,
        "metrics": [writer],
        "models": [cb.BestAndFinalModels(exp.files.checkpoints_dir, best_val_ra)],
        "tensorboard": [keras.callbacks.TensorBoard(exp.files.tensorboard_dir, write_graph=False,
                                                    update_freq="epoch")],
        "resume": [resume.ResumeCheckpoint(exp, model, writer, method + smooth,
                                           partial=partial,
                                           mid_epoch=_mid_epoch_resume(exp, plugin))],
        # masks between epochs, for mask-similarity figures and FLOPs
        "masks": [cb.MaskHistory(exp.files.masks_dir)] if plugin.sparse else [],
        "progress": ([progress.EpochProgress(c.epochs, sparse=plugin.sparse)]
                     if exp.verbose != 0 else []),
    }
    assert tuple(slots) == CALLBACK_SLOTS
    return slots, [callback for name in CALLBACK_SLOTS for callback in slots[name]]


def _mid_epoch_resume(exp, plugin):
    """Save at a SIGTERM's step: not for a plug-in that rebuilds its model between epochs, nor
    across workers (each would save the step it was signalled at)."""
    multi_worker = isinstance(exp.strategy, tf.distribute.MultiWorkerMirroredStrategy)
    return getattr(plugin, "mid_epoch_resume", True) and not multi_worker


def run_main_stage(exp, plugin, model, state, verbose=None):
    """The PGD-AT run whose epochs the protocol reports (stage 2 for multi-stage methods)."""
    c = exp.config
    initial_epoch = 0
    best_val_ra = -1.0
    # "done" without results.json: killed while finishing; every epoch is in the checkpoint.
    if resume.in_main_stage(state):
        initial_epoch = int(state.epoch)
        exp.history = list(state.history)
        best_val_ra = float(-1.0 if state.best_val_ra is None else state.best_val_ra)
        resume.restore_trainer(exp, model, state)
    slots, callbacks = main_stage_callbacks(exp, plugin, model, state, best_val_ra)
    writer = slots["metrics"][0]
    partial = state.partial if resume.in_main_stage(state) else None
    steps = exp.splits.steps_per_epoch
    with preemption.step_boundary():  # a SIGTERM now saves at the next step's end
        if partial and initial_epoch < c.epochs:
            # The rest of the epoch a SIGTERM stopped: its remaining batches, the callbacks told
            # the whole run's epochs and steps (``params``) as in an uninterrupted fit.
            done = int(partial["step"])
            shown = _verbosity(verbose)
            rest = keras.callbacks.CallbackList(callbacks, add_history=True,
                                                add_progbar=shown != 0, verbose=shown,
                                                epochs=c.epochs, steps=steps, model=model)
            if done < steps:
                model.fit(exp.splits.train_epochs(initial_epoch, initial_epoch + 1).skip(done),
                          epochs=initial_epoch + 1, initial_epoch=initial_epoch,
                          steps_per_epoch=steps - done, callbacks=rest, verbose=shown,
                          shuffle=False)
            else:  # stopped after the epoch's last step: only its end is left
                _epoch_end_only(model, rest, initial_epoch)
            initial_epoch += 1
        if initial_epoch < c.epochs:
            # Batches keyed by epoch, so a resumed run sees what an uninterrupted one saw.
            model.fit(exp.splits.train_epochs(initial_epoch, c.epochs), epochs=c.epochs,
                      initial_epoch=initial_epoch, steps_per_epoch=steps,
                      callbacks=callbacks, verbose=_verbosity(verbose), shuffle=False)
    if preemption.requested():  # arrived during the last epoch's end, which is saved
        raise preemption.Preempted(
            f"Stopped by SIGTERM after the last epoch; its checkpoint is complete in "
            f"{resume.checkpoint_dir(exp)}. Rerun the same command for the final evaluation.")
    exp.history = writer.history
    resume.mark_done(exp)
    resume.fault_point("finish", c.epochs)  # tests: a crash between the last epoch and results


def _epoch_end_only(model, callbacks, epoch):
    """What ``fit`` does around an epoch whose steps are all done: the callbacks' epoch begin
    (which puts back the running metrics) and end, with the logs ``fit`` would give."""
    callbacks.on_train_begin()
    model.reset_metrics()
    callbacks.on_epoch_begin(epoch)
    logs = model.get_metrics_result()
    callbacks.on_epoch_end(epoch, logs)
    callbacks.on_train_end(logs)


def _verbosity(verbose):
    """Keras' own epoch output: only its full line of every log entry at ``verbose=2`` (the
    detail); ``progress.EpochProgress`` prints the console line at 1 (None) and 2."""
    return 2 if verbose == 2 else 0


def finish(exp, plugin, model, seconds):
    """Protocol figures, the RGG on the final model, and ``results.json``."""
    c = exp.config
    summary = protocol.best_final_diff(exp.history)
    final = exp.history[-1]
    results = {
        "method": c.method,
        "arch": c.arch,
        "dataset": c.dataset,
        "epochs": c.epochs,
        "target_sparsity": c.sparsity if plugin.sparse else 0.0,
        "final_sparsity": _final_sparsity(model.net),
        "test_ra_final": float(final["test_ra"]),
        "train_ra_running_final": float(final["train_ra"]),
        "density_trajectory": [float(r.get("density", 1.0)) for r in exp.history],
        "seconds": seconds,
    }
    results.update(summary)
    val = [float(r["val_ra"]) for r in exp.history]
    results.update(val_ra_best=max(val), val_ra_final=val[-1])
    test_ra_final = final["test_ra"]
    attack = c.eval_attack()
    _quiet_evaluator_retraces()
    if c.final_test:
        attack = c.final_test_attack()
        results.update(final_test(exp, model, summary, attack))
        test_ra_final = results["ra_final"]
    changes = exp.files.read_config_changes()  # resumed under another config (launch.train)
    if changes is not None:
        results["config_changes"] = changes
    if c.rgg_eval:
        evaluator = epoch_eval.SplitEvaluator(model.net, attack, exp.strategy, c.seed)
        train = evaluator(exp.splits.train_eval)
        results["train_ra_final"] = train["ra"]
        results["rgg_final"] = protocol.robust_generalization_gap(train["ra"], test_ra_final)
        if c.final_test:
            # The validation split under the same attack: the setting search's gap (train RA
            # minus this) never looks at the test split.
            results["val_ra_final_final_attack"] = evaluator(exp.splits.val)["ra"]
    results.update(plugin.results(exp, model))
    # Every knob of the algorithm as the run used it, so no reader needs operative_config.gin.
    results["method_settings"] = plugin.settings_record(exp)
    results.update(exp.smoothing.results(exp, model))
    results.update(flop_count.results_fields(model.net, exp.history, c, exp.splits,
                                             plugin.costs(exp, model),
                                             masks_dir=exp.files.masks_dir))
    exp.files.write_results(results)
    logging.info("results: %s", json.dumps({k: v for k, v in results.items()
                                            if not isinstance(v, list)
                                            and k != "method_settings"}))
    return results


class _EvaluatorRetraces(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" warning for ``SplitEvaluator``.

    Each evaluator (per epoch, the final test's best and final models, the train split) traces
    its step for its model and split sizes on purpose; TensorFlow counts those traces across
    instances, so several runs in one process (launch.reproduce) would print the warning.
    """

    def filter(self, record):
        message = record.getMessage()
        return not ("SplitEvaluator._distributed_step" in message and "retracing" in message)


def _quiet_evaluator_retraces():
    logger = tf.get_logger()
    if not any(isinstance(f, _EvaluatorRetraces) for f in logger.filters):
        logger.addFilter(_EvaluatorRetraces())


def final_test(exp, model, summary, attack):
    """Best and final models on the whole test split; ``results.json`` entries.

    The per-epoch figures ``summary`` (on the capped split) move to ``epoch_*`` keys.
    """
    c = exp.config
    test = data_lib.get_dataset(c.dataset, batch_size=c.batch_size, data_dir=c.data_dir,
                                seed=c.seed, eval_batch_size=c.eval_batch_size,
                                max_train=c.max_train, max_eval=None, augment=False).test
    best_path = exp.files.checkpoint("best")
    start = time.time()
    figures = {"final": epoch_eval.SplitEvaluator(model.net, attack, exp.strategy,
                                                  c.seed)(test)}
    figures["best"] = figures["final"]  # the best epoch is the last: the same weights
    if protocol.best_epoch_index(exp.history) != len(exp.history) - 1 and \
            os.path.exists(best_path):
        with exp.strategy.scope():
            best = workdir_lib.load_model(exp.workdir, "best")
        figures["best"] = epoch_eval.SplitEvaluator(best, attack, exp.strategy, c.seed)(test)
    out = {f"epoch_{k}": v for k, v in summary.items() if k != "best_epoch"}
    for key in ("ra", "sa"):
        out[f"{key}_best"] = figures["best"][key]
        out[f"{key}_final"] = figures["final"][key]
        out[f"{key}_diff"] = out[f"{key}_best"] - out[f"{key}_final"]
    out.update(test_ra_final=figures["final"]["ra"], test_images=figures["final"]["n"],
               test_attack_steps=attack.steps, test_attack_step_size=attack.step_size,
               test_attack_eps=attack.eps,
               final_test_seconds=time.time() - start)
    return out


def _final_sparsity(net):
    try:
        return 1.0 - masks_lib.global_density(net)
    except ValueError:
        return 0.0

