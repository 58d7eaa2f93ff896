"""The one gin-configurable experiment: build data and model, run a method's PGD-AT, report.

Every method (dense, Flying Bird(+), Robust Bird, static baselines) is a plug-in from
``birds_tf.training.methods``; this function owns what they share: validation before work, the
workdir contract (``operative_config.gin``, ``metrics.csv``, TensorBoard logs, best/final models,
a resumable checkpoint, ``results.json``) and the paper's evaluation protocol.
"""
import dataclasses
import json
import logging
import os
import sys
import time

import gin
import keras
import tensorflow as tf

from birds_tf import data as data_lib
from birds_tf import models as models_lib
from birds_tf.metrics import flops, protocol
from birds_tf.sparsity import masks as masks_lib
from birds_tf.training import callbacks as cb
from birds_tf.training import evaluation, methods, resume, smoothing
from birds_tf.training.adversarial import BN_MODES, AdversarialModel, AttackConfig
from birds_tf.training.optimizer import MultiStepLR, TorchSGD

MIXED_POLICIES = (None, "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass
class Config:
    """Everything ``train_eval`` was asked to do, validated before any work starts."""

    method: str = "dense"
    dataset: str = "digits"
    data_dir: str = None
    arch: str = "preact_resnet18"
    arch_kwargs: dict = dataclasses.field(default_factory=dict)
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
    # False: no training augmentation (the CPU-size offline scale, gin/offline.gin).
    augment: bool = True

    def validate(self):
        if self.method not in methods.names():
            raise ValueError(f"Unknown method {self.method!r}; allowed: {methods.names()}.")
        if self.dataset not in data_lib.DATASETS:
            raise ValueError(f"Unknown dataset {self.dataset!r}; allowed: {data_lib.DATASETS}.")
        if self.arch not in models_lib.names():
            raise ValueError(f"Unknown architecture {self.arch!r}; allowed: "
                             f"{models_lib.names()}.")
        _positive_int("epochs", self.epochs)
        _positive_int("batch_size", self.batch_size)
        if self.eval_batch_size is not None:
            _positive_int("eval_batch_size", self.eval_batch_size)
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}.")
        for m in self.milestones:
            if not isinstance(m, int) or not 0 < m <= self.epochs:
                raise ValueError(f"Learning-rate milestone {m!r} is outside 1..epochs "
                                 f"({self.epochs}); drop it or raise epochs.")
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"Target sparsity must be in [0, 1), got {self.sparsity!r} "
                             "(0.8 means 80% of the weights pruned).")
        if self.attack_bn_mode not in BN_MODES:
            raise ValueError(f"attack_bn_mode must be one of {BN_MODES}, got "
                             f"{self.attack_bn_mode!r}.")
        if not isinstance(self.augment, bool):
            raise ValueError(f"augment must be True or False, got {self.augment!r}.")
        if self.mixed_precision not in MIXED_POLICIES:
            raise ValueError(f"mixed_precision must be one of {MIXED_POLICIES}, got "
                             f"{self.mixed_precision!r}.")
        # Attack settings raise with the offending value themselves; PGD-AT needs >= 1 step.
        from birds_tf.attacks import pgd
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


def _positive_int(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")


class Experiment:
    """Shared state handed to method plug-ins: data, the model factory, and the trainer."""

    def __init__(self, config, workdir, strategy, splits):
        self.config = config
        self.workdir = workdir
        self.strategy = strategy
        self.splits = splits
        self.history = []
        self.extra_results = {}
        # KD / SWA add-ons (training/smoothing.py); trainer_cls is the main stage's trainer.
        self.smoothing = smoothing.Smoothing.disabled()
        self.trainer_cls = AdversarialModel

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


@gin.configurable
def train_eval(workdir, strategy=None, method="dense", dataset="digits", data_dir=None,
               arch="preact_resnet18", arch_kwargs=None, epochs=200, batch_size=128,
               eval_batch_size=None, lr=0.1, momentum=0.9, weight_decay=5e-4,
               milestones=(100, 150), gamma=0.1, train_eps=8 / 255, train_step_size=2 / 255,
               train_steps=10, attack_bn_mode="train", eval_eps=8 / 255,
               eval_step_size=2 / 255, eval_steps=20, sparsity=0.0, seed=1, max_train=None,
               max_eval=None, jit_compile=False, mixed_precision=None, rgg_eval=True,
               augment=True, verbose=None):
    """Train one method with PGD-AT into ``workdir`` and return the results dict."""
    config = Config(method, dataset, data_dir, arch, dict(arch_kwargs or {}), epochs, batch_size,
                    eval_batch_size, lr, momentum, weight_decay, tuple(milestones), gamma,
                    train_eps, train_step_size, train_steps, attack_bn_mode, eval_eps,
                    eval_step_size, eval_steps, sparsity, seed, max_train, max_eval,
                    jit_compile, mixed_precision, rgg_eval, augment).validate()
    plugin = methods.get(config.method)(config)  # validates its own settings
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
    exp = Experiment(config, workdir, strategy, splits)
    exp.smoothing = smooth
    exp.trainer_cls = smooth.trainer_cls(exp) or AdversarialModel  # loads and checks teachers
    start = time.time()
    state = resume.load(exp)
    if state is not None and state.get("stage") == "done" and os.path.exists(
            exp.path("results.json")):
        logging.info("%s already holds a finished run; its results are unchanged.", workdir)
        with open(exp.path("results.json")) as f:
            return json.load(f)
    if hasattr(plugin, "run_main"):  # methods that rebuild their model mid-run (fb_plus_channel)
        model = plugin.run_main(exp, state, verbose)
    else:
        net, model = plugin.prepare(exp, state)
        run_main_stage(exp, plugin, model, state, verbose)
    return finish(exp, plugin, model, time.time() - start)


def run_main_stage(exp, plugin, model, state, verbose=None):
    """The PGD-AT run whose epochs the protocol reports (stage 2 for multi-stage methods)."""
    c = exp.config
    initial_epoch = 0
    best_val_ra = -1.0
    # "done" without results.json: killed while finishing; every epoch is in the checkpoint.
    if resume.in_main_stage(state):
        initial_epoch = int(state["epoch"])
        exp.history = list(state["history"])
        best_val_ra = float(state.get("best_val_ra", -1.0))
        resume.restore_trainer(exp, model, state)
    extra = plugin.callbacks(exp, model, state)
    extra = extra + exp.smoothing.callbacks(exp, model, state)  # SWA, after the method's
    writer = cb.MetricsWriter(exp.path("metrics.csv"), exp.history)
    callbacks = [cb.EpochEvaluation(exp.splits, c.eval_attack(), exp.strategy, seed=c.seed)]
    callbacks += extra
    callbacks += [
        writer,
        cb.BestAndFinalModels(exp.path("checkpoints"), best_val_ra),
        keras.callbacks.TensorBoard(exp.path("tensorboard"), write_graph=False,
                                    update_freq="epoch"),
        resume.ResumeCheckpoint(exp, model, writer, extra),
    ]
    if plugin.sparse:  # masks between epochs, for mask-similarity figures and FLOPs
        callbacks.append(cb.MaskHistory(exp.path("masks")))
    callbacks.insert(0, cb.NonFiniteLossGuard(exp))
    if initial_epoch < c.epochs:
        # Batches keyed by epoch, so a resumed run sees what an uninterrupted one saw.
        model.fit(exp.splits.train_epochs(initial_epoch, c.epochs), epochs=c.epochs,
                  initial_epoch=initial_epoch, steps_per_epoch=exp.splits.steps_per_epoch,
                  callbacks=callbacks, verbose=_verbosity(verbose), shuffle=False)
    exp.history = writer.history
    resume.mark_done(exp)
    resume.fault_point("finish", c.epochs)  # tests: a crash between the last epoch and results


def _verbosity(verbose):
    if verbose is not None:
        return verbose
    return 1 if sys.stdout.isatty() else 2


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
    if c.rgg_eval:
        evaluator = evaluation.SplitEvaluator(model.net, c.eval_attack(), exp.strategy, c.seed)
        train = evaluator(exp.splits.train_eval)
        results["train_ra_final"] = train["ra"]
        results["rgg_final"] = protocol.robust_generalization_gap(train["ra"],
                                                                  final["test_ra"])
    results.update(plugin.results(exp, model))
    results.update(exp.smoothing.results(exp, model))
    results.update(exp.extra_results)
    results.update(flops.results_fields(model.net, exp.history, c, exp.splits, results,
                                        masks_dir=exp.path("masks")))
    cb.write_json(exp.path("results.json"), results)
    logging.info("results: %s", json.dumps({k: v for k, v in results.items()
                                            if not isinstance(v, list)}))
    return results


def _final_sparsity(net):
    try:
        return 1.0 - masks_lib.global_density(net)
    except ValueError:
        return 0.0

