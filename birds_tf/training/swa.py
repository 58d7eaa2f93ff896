"""Stochastic weight averaging during PGD-AT (paper Figure 4, "+ SWA"), as a Keras callback.

The recipe of Chen et al. 2021 (docs/authors-code.md, "KD and SWA"): from ``start_epoch`` on, after
every epoch the averaged model takes ``swa = swa * (1 - 1/(n+1)) + w / (n+1)`` (``n`` = models
averaged so far; the first update copies ``w``), then its BatchNorm statistics are recomputed
(``bn_update``): reset, then one pass in training mode over the clean training data with a
cumulative average of the batch statistics (momentum ``b / (n + b)``), and the average is
evaluated like the plain model (validation and test SA / PGD-20 RA).

Choices, stated:

* ``start_epoch`` counts epochs from 1: the weights at the end of epoch ``start_epoch`` are the
  first ones averaged. The reference's ``--swa_start 55`` tests a 0-based epoch index, so the
  same schedule is ``start_epoch = 56`` here.
* Only trainable variables (kernels, biases, BN scale/offset) are averaged, as the reference
  averages ``parameters()``; BN moving statistics are recomputed; other non-trainable variables
  (masks, the input normaliser) are copied from the current model.
* Sparse runs: the average keeps the **current** mask. After each update the averaged kernels are
  multiplied by it, so the SWA model has exactly the current mask's zeros (positions pruned now
  lose their history; a weight regrown later starts its average from those zeros). The reference
  is dense only; how the paper merged SWA with FB+ is not published.
* The BN pass reads the training split without augmentation (``splits.train_eval``), in batches
  of the evaluation batch size. Batch variances are Keras's (biased, as every moving variance in
  this library); PyTorch's running variance uses the unbiased estimate, a factor
  ``N / (N - 1)`` with ``N`` = batch x height x width elements per channel.
"""
import os

import keras
import numpy as np
import tensorflow as tf

from birds_tf.metrics import protocol
from birds_tf.sparsity import masks as masks_lib
from birds_tf.training import epoch_eval
from birds_tf.utils import records
from birds_tf.utils.workdir import Workdir

__all__ = ["StochasticWeightAveraging", "update_average", "recompute_bn", "clone_net",
           "batch_norm_layers", "history_results", "LOG_KEYS"]

LOG_KEYS = ("swa_val_sa", "swa_val_ra", "swa_val_robust_loss", "swa_test_sa", "swa_test_ra",
            "swa_test_robust_loss")


def batch_norm_layers(net):
    return [layer for layer in masks_lib.walk_layers(net)
            if isinstance(layer, keras.layers.BatchNormalization)]


def _bn_stat_ids(net):
    ids = set()
    for layer in batch_norm_layers(net):
        ids.add(id(layer.moving_mean))
        ids.add(id(layer.moving_variance))
    return ids


def _paired_weights(swa_net, net):
    ours, theirs = swa_net.weights, net.weights
    if len(ours) != len(theirs) or any(tuple(a.shape) != tuple(b.shape)
                                       for a, b in zip(ours, theirs)):
        raise ValueError("The SWA model and the trained model differ in architecture; build the "
                         "SWA model with the same factory (or keras.models.clone_model).")
    return list(zip(ours, theirs))


def update_average(swa_net, net, n):
    """One SWA step: ``swa = swa (1 - 1/(n+1)) + w / (n+1)``; returns ``n + 1``.

    Trainable variables are averaged; BN moving statistics are left for ``recompute_bn``; every
    other variable (masks, normaliser) is copied, then the averaged kernels are zeroed where the
    current mask is 0.
    """
    alpha = 1.0 / (n + 1)
    stats = _bn_stat_ids(swa_net)
    for avg, w in _paired_weights(swa_net, net):
        if id(avg) in stats:
            continue
        value = np.asarray(w.numpy())
        if avg.trainable:
            old = np.asarray(avg.numpy(), np.float64)
            value = old * (1.0 - alpha) + value.astype(np.float64) * alpha
        avg.assign(value.astype(np.asarray(avg.numpy()).dtype))
    masks_lib.apply_masks(swa_net)
    return n + 1


def recompute_bn(net, dataset, forward=None):
    """The reference's ``bn_update``: BN statistics = cumulative average over one pass.

    Every BN layer's moving mean / variance becomes ``sum_i b_i * stat_i / sum_i b_i`` over the
    batches of ``dataset`` (``(images, labels)``), with the network in training mode (each layer
    normalises with its batch statistics during the pass, as in PyTorch). ``forward`` is an
    optional compiled ``x -> net(x, training=True)`` to reuse across calls; it must be traced
    while the momenta are 0 (this function sets them so around the pass). Returns the number of
    examples seen.
    """
    layers = batch_norm_layers(net)
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    forward = forward or tf.function(lambda x: net(x, training=True), reduce_retracing=True)
    sums = [[np.zeros(layer.moving_mean.shape, np.float64),
             np.zeros(layer.moving_variance.shape, np.float64)] for layer in layers]
    seen = 0
    try:
        for layer in layers:
            layer.momentum = 0.0  # moving statistic := this batch's statistic
        for batch in dataset:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            b = int(x.shape[0])
            forward(tf.cast(x, tf.float32))
            for (mean, var), layer in zip(sums, layers):
                mean += b * np.asarray(layer.moving_mean.numpy(), np.float64)
                var += b * np.asarray(layer.moving_variance.numpy(), np.float64)
            seen += b
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    if seen == 0:
        raise ValueError("Cannot recompute BN statistics on an empty dataset.")
    for (mean, var), layer in zip(sums, layers):
        layer.moving_mean.assign((mean / seen).astype(np.float32))
        layer.moving_variance.assign((var / seen).astype(np.float32))
    return seen


def clone_net(net, strategy=None):
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        clone = keras.models.clone_model(net)
    clone.set_weights(net.get_weights())
    return clone


class StochasticWeightAveraging(keras.callbacks.Callback):
    """Keeps, BN-updates, evaluates and saves the weight average of ``net`` (see module doc).

    Args:
      net: the classifier being trained (the trainer's ``net``).
      start_epoch: first (1-based) epoch whose end-of-epoch weights are averaged.
      bn_data: batched clean training data for the BN pass (``splits.train_eval``).
      val, test: batched evaluation splits (``None`` skips one); figures go into the epoch logs
        as ``swa_val_sa``, ``swa_val_ra``, ``swa_test_ra``, ... (so into ``metrics.csv``).
      attack: the evaluation attack (PGD-20 by default).
      directory: where ``swa.keras`` (latest average) and ``swa_best.keras`` (highest SWA
        validation RA) go, plus ``swa_resume/`` (the average of the last two epochs, for resume).
      build_net: factory of a fresh net of the same architecture (default: clone ``net``).
    """

    def __init__(self, net, start_epoch, bn_data, val=None, test=None,
                 attack=epoch_eval.EVAL_ATTACK, strategy=None, seed=0, directory=None,
                 build_net=None):
        super().__init__()
        if not isinstance(start_epoch, int) or isinstance(start_epoch, bool) or start_epoch < 1:
            raise ValueError(f"SWA start_epoch must be an integer >= 1, got {start_epoch!r}.")
        self.net = net
        self.start_epoch = start_epoch
        self.bn_data = bn_data
        self.val = val
        self.test = test
        self.attack = attack
        self.strategy = strategy or tf.distribute.get_strategy()
        self.seed = seed
        self.directory = directory
        self.swa_net = build_net() if build_net is not None else clone_net(net, self.strategy)
        _paired_weights(self.swa_net, net)
        self.n = 0
        self.last_epoch = 0
        self.best_val_ra = -1.0
        self.best_epoch = None
        self._forward = None
        self._evaluator = None
        self._resume_file = None

    # -- the average ---------------------------------------------------------------------------
    def update(self):
        """Average the current weights in and recompute the BN statistics."""
        self.n = update_average(self.swa_net, self.net, self.n)
        self.recompute_bn()
        return self.n

    def recompute_bn(self):
        if self._forward is None:
            net = self.swa_net
            self._forward = tf.function(lambda x: net(x, training=True), reduce_retracing=True)
        with self.strategy.scope():
            return recompute_bn(self.swa_net, self.bn_data, self._forward)

    def evaluator(self):
        if self._evaluator is None:
            self._evaluator = epoch_eval.SplitEvaluator(self.swa_net, self.attack,
                                                        self.strategy, self.seed)
        return self._evaluator

    def evaluate(self, dataset, draw=None):
        """SA / RA of the averaged model; ``draw`` picks the random starts (see
        ``epoch_eval.SplitEvaluator``): the per-epoch figures pass the epoch."""
        return self.evaluator()(dataset, draw=draw)

    # -- callback ------------------------------------------------------------------------------
    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 < self.start_epoch:
            return
        logs = logs if logs is not None else {}
        self.update()
        self.last_epoch = epoch + 1
        logs["swa_updates"] = float(self.n)
        if self.val is not None:
            val = self.evaluate(self.val, draw=epoch)
            logs.update(swa_val_sa=val["sa"], swa_val_ra=val["ra"],
                        swa_val_robust_loss=val["robust_loss"])
        if self.test is not None:
            test = self.evaluate(self.test, draw=epoch)
            logs.update(swa_test_sa=test["sa"], swa_test_ra=test["ra"],
                        swa_test_robust_loss=test["robust_loss"])
        if self.directory is not None:
            self._save(epoch + 1, logs.get("swa_val_ra"))

    def _save(self, epoch, val_ra):
        os.makedirs(self.directory, exist_ok=True)
        records.atomic_save_model(self.swa_net,
                                  os.path.join(self.directory, Workdir.model_file_name("swa")))
        if val_ra is not None and float(val_ra) > self.best_val_ra:
            self.best_val_ra = float(val_ra)
            self.best_epoch = epoch
            records.atomic_save_model(
                self.swa_net, os.path.join(self.directory, Workdir.model_file_name("swa_best")))
        resume_dir = os.path.join(self.directory, Workdir.SWA_RESUME_DIR)
        os.makedirs(resume_dir, exist_ok=True)
        path = os.path.join(resume_dir, Workdir.swa_resume_file_name(epoch))
        tmp = os.path.join(resume_dir, Workdir.swa_resume_file_name(epoch, tmp=True))
        self.swa_net.save_weights(tmp)
        os.replace(tmp, path)
        self._resume_file = path
        # Keep the two latest: the resume state may still name the previous one.
        for old_epoch, old in Workdir.swa_resume_files(resume_dir)[:-2]:
            if old_epoch < epoch - 1:
                os.remove(old)

    def get_state(self):
        return {"n": self.n, "last_epoch": self.last_epoch, "best_val_ra": self.best_val_ra,
                "best_epoch": self.best_epoch, "weights": self._resume_file}

    def set_state(self, state):
        self.n = int(state.get("n", 0))
        self.last_epoch = int(state.get("last_epoch", 0))
        self.best_val_ra = float(state.get("best_val_ra", -1.0))
        self.best_epoch = state.get("best_epoch")
        path = state.get("weights")
        if self.n > 0:
            if not path or not os.path.exists(path):
                raise FileNotFoundError(
                    f"The resume state says {self.n} models were averaged but their average "
                    f"{path!r} is missing; restart the run in a new workdir.")
            self.swa_net.load_weights(path)
            self._resume_file = path


def history_results(history, prefix="swa_"):
    """Best / final / diff of the SWA model from the epoch rows that evaluated it.

    Best = the SWA test figure at the epoch with the highest SWA validation RA (over the SWA
    epochs only, as the reference's ``best_ra_swa``); Final = the last epoch.
    """
    rows = [{"epoch": r.get("epoch"), "val_ra": r[prefix + "val_ra"],
             "test_ra": r[prefix + "test_ra"], "test_sa": r[prefix + "test_sa"]}
            for r in history if _present(r.get(prefix + "val_ra"))
            and _present(r.get(prefix + "test_ra"))]
    if not rows:
        return {}
    summary = protocol.best_final_diff(rows)
    return {prefix + key: value for key, value in summary.items()}


def _present(value):
    try:
        return value is not None and not np.isnan(float(value))
    except (TypeError, ValueError):
        return False
