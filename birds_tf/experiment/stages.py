"""What multi-stage methods share: pre-stage trainers, their per-epoch log, and weight copies.

A *pre-stage* is any training that happens before the protocol's PGD-AT run (Robust Bird's
ticket-finding stage 1, OMP's dense pre-training, IWI's stage A). Its rows go to a CSV of their
own (``stage1_metrics.csv``, ``pretrain_metrics.csv``, ...) so ``metrics.csv`` keeps exactly the
protocol rows. Pre-stages are not checkpointed: a run that crashes during one restarts it from
scratch on resume (``train_eval``'s resume state only exists once the main stage has finished
an epoch, and from then on every method skips its pre-stages).

Training regimes (the authors' code at 6e9a862, ``Robust-Bird/utils/function.py``;
docs/authors-code.md, "Robust Bird"):

* ``'sgd'``  -- clean training (``train_epoch``), SGD with a multi-step schedule;
* ``'pgd'``  -- PGD-AT with the run's training attack (PGD-10 by default), multi-step schedule;
* ``'fast'`` -- Fast-AT (Wong et al., 2020): FGSM with a uniform random start and step
  ``1.25 * eps``, and a one-cycle triangular learning rate ``0 -> peak -> 0`` peaking at
  ``epochs * 2 // 5`` (the ``np.interp`` schedule of Wong et al.'s code, evaluated per iteration).
"""
import logging
import time

import keras
import numpy as np
from keras import ops

from birds_tf.training import epoch_eval
from birds_tf.training.adversarial import AdversarialModel, AttackConfig
from birds_tf.training.optimizer import current_lr
from birds_tf.utils.records import write_rows_csv
from birds_tf.training import progress

MODES = ("sgd", "pgd", "fast")
FAST_STEP_FACTOR = 1.25


def check_mode(mode, name="stage1"):
    if mode not in MODES:
        raise ValueError(f"Unknown {name} training mode {mode!r}; allowed: {MODES}.")
    return mode


def stage_attack(mode, config):
    """The training attack of a regime; ``'sgd'`` is clean (no attack)."""
    check_mode(mode)
    if mode == "sgd":
        return AttackConfig(eps=0.0, step_size=0.0, steps=0, random_start=False)
    if mode == "pgd":
        return config.train_attack()
    eps = config.train_eps
    return AttackConfig(eps, FAST_STEP_FACTOR * eps, 1, True, config.attack_bn_mode)


@keras.saving.register_keras_serializable(package="birds_tf")
class OneCycleLR(keras.optimizers.schedules.LearningRateSchedule):
    """Fast-AT's cyclic rate: ``np.interp(t, [0, E*2//5, E], [0, peak, 0])``.

    ``t = (iteration + 1) / steps_per_epoch`` is the fractional epoch after the update (Wong et
    al. step their rate before each update with ``epoch + (i + 1) / len(loader)``).
    """

    def __init__(self, peak_lr, epochs, steps_per_epoch):
        self.peak_lr = float(peak_lr)
        self.epochs = int(epochs)
        self.steps_per_epoch = int(steps_per_epoch)
        if self.epochs < 1 or self.steps_per_epoch < 1:
            raise ValueError(f"OneCycleLR needs epochs >= 1 and steps_per_epoch >= 1, got "
                             f"{epochs!r} and {steps_per_epoch!r}.")
        self.peak_epoch = self.epochs * 2 // 5

    def value(self, step):
        """NumPy reference of ``__call__`` (for tests and logs)."""
        t = (float(step) + 1.0) / self.steps_per_epoch
        return float(np.interp(t, [0, self.peak_epoch, self.epochs], [0, self.peak_lr, 0]))

    def __call__(self, step):
        t = (ops.cast(step, "float32") + 1.0) / float(self.steps_per_epoch)
        e, p, peak = float(self.epochs), float(self.peak_epoch), self.peak_lr
        down = peak * ops.maximum(e - t, 0.0) / max(e - p, 1e-12)
        if self.peak_epoch == 0:
            return ops.cast(down, "float32")
        up = peak * t / p
        return ops.cast(ops.where(t <= p, up, down), "float32")

    def get_config(self):
        return dict(peak_lr=self.peak_lr, epochs=self.epochs,
                    steps_per_epoch=self.steps_per_epoch)


def attack_steps(mode, config):
    """PGD steps per training batch of a regime (for FLOPs accounting): 0, 1 or ``train_steps``."""
    return {"sgd": 0, "fast": 1, "pgd": int(config.train_steps)}[check_mode(mode)]


def make_stage_trainer(exp, net, mode, epochs, milestones=(), lr=None, fast_peak_lr=0.2):
    """A compiled trainer for a pre-stage: fresh TorchSGD (the run's momentum and weight decay)."""
    attack = stage_attack(mode, exp.config)
    schedule = None
    if mode == "fast":
        schedule = OneCycleLR(fast_peak_lr, epochs, exp.splits.steps_per_epoch)
    return exp.make_trainer(net, attack=attack, lr=lr, milestones=tuple(milestones),
                            lr_schedule=schedule, trainer_cls=AdversarialModel)  # never KD




class PreStageLog(keras.callbacks.Callback):
    """One row per pre-stage epoch: lr, training loss/accuracy, clean validation SA.

    Numeric entries other callbacks put in ``logs`` before it (e.g. mask distances) become extra
    columns; the CSV is rewritten after every epoch. ``train_acc`` is the running accuracy on the
    stage's training inputs (clean for ``'sgd'``, adversarial for ``'pgd'``/``'fast'``).
    """

    def __init__(self, path, splits, stage, strategy=None, robust_attack=None, seed=0):
        super().__init__()
        self.seed = seed
        self.path = path
        self.splits = splits
        self.stage = stage
        self.strategy = strategy
        self.robust_attack = robust_attack
        self.rows = []
        self._clean = None
        self._robust = None
        self._start = None
        self._lr = None
        self.console = False  # print progress.format_stage lines (run_pre_stage sets it)

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.time()
        self._lr = current_lr(self.model.optimizer)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        if self._clean is None:
            self._clean = epoch_eval.SplitEvaluator(
                self.model.net, AttackConfig(eps=0.0, step_size=0.0, steps=0), self.strategy,
                self.seed)
        row = {"stage": self.stage, "epoch": epoch + 1, "lr": self._lr,
               "train_loss": float(logs.get("loss", np.nan)),
               "train_acc": 100.0 * float(logs.get("ra", np.nan)),
               "val_sa": self._clean(self.splits.val)["sa"]}
        if self.robust_attack is not None:
            if self._robust is None:
                self._robust = epoch_eval.SplitEvaluator(self.model.net, self.robust_attack,
                                                         self.strategy, self.seed)
            row["val_ra"] = self._robust(self.splits.val)["ra"]
        for key, value in logs.items():
            if key in ("loss", "ra") or key in row:
                continue
            if isinstance(value, (int, float, np.floating, np.integer)):
                row[key] = float(value)
        row["seconds"] = time.time() - (self._start or time.time())
        self.rows.append(row)
        write_rows_csv(self.path, self.rows)
        logging.info("%s epoch %d: %s", self.stage, epoch + 1,
                     {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
        if self.console:
            print(progress.format_stage(row), flush=True)


def run_pre_stage(exp, trainer, epochs, file_stage, stage, callbacks=(), robust_eval=False,
                  log=None):
    """``fit`` a pre-stage for up to ``epochs`` epochs; returns its rows (one per epoch run).

    The rows go to ``<file_stage>_metrics.csv`` (``Workdir.stage_metrics_csv``).

    Pass the ``log`` of an earlier pre-stage on the same net to append to its CSV (and reuse its
    compiled evaluator); its ``stage`` label is switched to ``stage``.
    """
    if log is None:
        log = PreStageLog(exp.files.stage_metrics_csv(file_stage), exp.splits, stage, exp.strategy,
                          exp.config.eval_attack() if robust_eval else None, exp.config.seed)
    log.stage = stage
    log.console = exp.verbose != 0
    first = len(log.rows)
    trainer.fit(exp.splits.train, epochs=int(epochs), callbacks=list(callbacks) + [log],
                verbose=0, shuffle=False)
    return log.rows[first:]


def copy_weights(source, target):
    """Every variable of ``source`` (kernels, masks, BN statistics) into ``target``.

    Both must have the same architecture (the same variables in the same order).
    """
    src, dst = source.get_weights(), target.get_weights()
    if len(src) != len(dst) or any(np.shape(a) != np.shape(b) for a, b in zip(src, dst)):
        raise ValueError("copy_weights needs two networks of the same architecture.")
    target.set_weights(src)


def snapshot(net):
    """A NumPy copy of every variable of ``net`` (for rewinding)."""
    return [np.array(w, copy=True) for w in net.get_weights()]
