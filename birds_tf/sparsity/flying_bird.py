"""Flying Bird (dynamic sparse PGD-AT) and Flying Bird+ (adaptive prune/grow) as a callback.

Every ``delta_t`` iterations each masked layer drops its ``ceil(k * nnz)`` smallest-magnitude
active weights and regrows as many inactive ones with the largest dense-gradient magnitude
(paper Section 3.3, RigL-style; the gradient of the current adversarial batch's cross-entropy
with respect to ``kernel * mask``, all-reduced over replicas). ``k`` follows a per-iteration
cosine from 0.5 to 0.005 over the whole run and updates never stop (the authors' code at
6e9a862, ``sparselearning/core.py`` ``CosineDecay``; the paper says only "cosine annealing").
Flying Bird+ watches the robust generalization gap and the validation robust loss once per epoch
and, from ``t_start`` on, prunes an extra ``ceil(0.4 k nnz)`` and/or grows ``int(1.05 x)`` of
the regular count: Algorithm 2's ``p = (1 + delta_p) k`` with Appendix A2.3's "0.4% and 0.05%"
read as the factors 0.4 and 0.05. That reading is the authors' code's (``prune_ratio`` /
``growth_ratio`` in ``core.py``), not the paper's words: taken literally, 0.4% would make
``p = 1.004 k``. Random growth grows ``1.05 x`` rounded at random, the reference's expected count.

Paper defaults vs the reference code (``gin/table1/fb_plus_resnet18_official_code.gin``): trigger
threshold 0.75 vs 0.5 (see ``fb_plus_triggers``); ``prune_ties='exact'`` vs ``'threshold'``
(see ``update_layer_mask``); gradient growth ranking the empty positions vs the reference's
default random growth (``growth='random_bernoulli'``) and, with ``--growth gradient``, its
top-k over all positions (``gradient_topk='all'``); ``delta_t`` 2000 vs 900 then 1200. Both
keep a weight pruned and regrown in the same update (value and momentum), as the reference does.
``growth='random'`` is an exact count drawn at random, in neither.

The callback runs in cross-replica context (``on_train_batch_end``), so mask, kernel and
momentum assignments reach every replica identically.
"""
import collections
import math

import keras
import numpy as np

from birds_tf.sparsity import masks as masks_lib
from birds_tf.utils.checks import integer as _check_int

GROWTH_MODES = ("gradient", "random", "random_bernoulli")
# Which positions gradient growth ranks: only the empty ones (paper) or all, active ones scored 0
# (the reference's top-k); see ``update_layer_mask``.
GRADIENT_TOPK = ("empty", "all")
PRUNE_TIES = ("exact", "threshold")
# Salt mixed into the run seed for random growth, so growth draws differ from the
# random initial mask drawn from the same train_eval.seed.
_GROWTH_SALT = 0x46422B


def cosine_k(step, total_steps, k_init=0.5, k_min=0.005):
    """``k(t) = k_min + (k_init - k_min) (1 + cos(pi t / T)) / 2`` (torch CosineAnnealingLR)."""
    return k_min + (k_init - k_min) * (1.0 + math.cos(math.pi * step / total_steps)) / 2.0


def increasing_fraction(values, strict):
    """Fraction of consecutive differences that increase (``>`` if strict, else ``>=``)."""
    diffs = np.diff(np.asarray(values, dtype=np.float64))
    if diffs.size == 0:
        return 0.0
    hits = diffs > 0 if strict else diffs >= 0
    return float(hits.sum()) / diffs.size


def fb_plus_triggers(gaps, losses, queue_length=5, threshold=0.75):
    """(prune_more, grow_more) from full FIFO queues of per-epoch gap and validation loss.

    The last ``queue_length`` values give ``queue_length - 1`` consecutive differences (paper
    Appendix A1: "compare the measurements stored in the queue between two consequent epochs").
    Prune more when the fraction of strictly increasing gap differences is ``>= threshold``
    (over-fitting); grow more when the fraction of validation-loss differences that increase or
    stay equal is ``>= threshold`` (a plateau: under-fitting). The strict/non-strict comparisons
    are the authors' code's (``get_dst_ratio``). ``threshold=0.75`` (3 of 4 differences) is the
    paper's "most epochs (e.g. more than 3 out of the past 5 epochs)" read as a fraction: more
    than 3/5 of the window, i.e. at least 3 of its 4 differences, a strict majority. The
    reference's epsilon is 0.5 (2 of 4); the count reading "4 or more increases" is
    ``threshold=1.0``.
    """
    if len(gaps) < queue_length or len(losses) < queue_length:
        return False, False
    prune_more = increasing_fraction(list(gaps)[-queue_length:], strict=True) >= threshold
    grow_more = increasing_fraction(list(losses)[-queue_length:], strict=False) >= threshold
    return prune_more, grow_more


def update_counts(nnz, numel, k, prune_more=False, grow_more=False, prune_ratio=0.4,
                  growth_ratio=0.05):
    """(removed, grown) for one layer: the rule's exact numbers, before capacity limits."""
    regular = min(int(math.ceil(k * nnz)), nnz)
    removed = regular
    if prune_more:
        removed = min(regular + int(math.ceil(k * prune_ratio * nnz)), nnz)
    grown = regular
    if grow_more:
        grown = min(int(regular * (1.0 + growth_ratio)), numel)
    return removed, grown


def random_grow_more_count(base, growth_ratio, candidates, rng):
    """Random growth's grow-more count: ``min(base * (1 + growth_ratio), candidates)`` rounded
    up with probability equal to its fractional part.

    Why: the reference grows each inactive position with probability ``min(1.05 base, n) / n``
    (``random_growth`` in the authors' code), so its expected count is ``1.05 base`` exactly;
    ``int(1.05 base)`` would grow less on average and nothing extra at all in layers with
    ``base < 20``. Gradient growth keeps ``int()``, as the reference's does. This is
    ``growth='random'`` (an exact count); ``'random_bernoulli'`` draws as the reference does.
    """
    target = min(base * (1.0 + growth_ratio), float(candidates))
    count = int(math.floor(target))
    if target - count > 0 and rng.random() < target - count:
        count += 1
    return count


def bernoulli_growth(candidates, target, rng):
    """The reference's ``random_growth``: each of the ``n`` empty positions regrows on its own
    with probability ``target / n`` (``target`` capped at ``n``).

    Not the paper's rule: the count is right only in expectation, so a layer's density drifts
    between updates, and with the reference's skip of fully dense layers (``update_layer_mask``)
    a layer that happens to refill every empty position is never pruned or grown again. For a
    nearly dense layer (``z`` zeros, ``P`` pruned) that happens with probability about
    ``(P / (z + P)) ** (z + P)``, roughly ``e ** -z``: an absorbing dense state.
    """
    n = candidates.size
    if n == 0 or target <= 0:
        return candidates[:0]
    draws = rng.random(n)
    return candidates[draws < min(float(target), float(n)) / n]


def _prune_exact(magnitude, mask, removed):
    """Exactly ``removed`` smallest active magnitudes; ties broken by position (lowest first)."""
    score = np.where(mask, magnitude, np.inf)
    keep = mask.copy()
    keep[np.argsort(score, kind="stable")[:removed]] = False
    return keep


def _prune_threshold(magnitude, numel, nnz, removed):
    """The reference's ``magnitude_death``: ``thr = sorted(|w|)[num_zeros + removed - 1]`` over the
    whole tensor, ``keep = |w| > thr``: every active weight tied with the threshold
    goes too, so with ties more than ``removed`` weights are dropped."""
    index = min((numel - nnz) + removed, numel)
    if index <= 0:
        return magnitude > -1.0
    threshold = np.sort(magnitude)[index - 1]
    return magnitude > threshold


def update_layer_mask(weights, mask, grad, k, prune_more=False, grow_more=False,
                      prune_ratio=0.4, growth_ratio=0.05, growth="gradient", rng=None,
                      prune_ties="exact", reset_regrown=False, gradient_topk="empty"):
    """New mask after one prune/grow step.

    Args:
      weights: the layer's effective kernel (``kernel * mask``; inactive entries are 0).
      mask, grad: the current mask and the dense gradient (``None`` for random growth).
      k: the update ratio of this step.
      prune_more, grow_more: the Flying Bird+ triggers.
      prune_ratio, growth_ratio: FB+'s factors on the regular count (see the module docstring).
      growth: ``'gradient'`` (largest ``|grad|``, paper), ``'random'`` (exactly the budget,
        drawn uniformly among the inactive) or ``'random_bernoulli'`` (the reference's default
        ``--growth random``: each inactive position with probability budget / inactive, see
        ``bernoulli_growth``).
      rng: a ``numpy`` Generator for random growth.
      prune_ties: ``'exact'`` (paper default): exactly the rule's count is pruned, magnitude ties
        broken by position. ``'threshold'`` (reference code): every active weight tied with the
        threshold magnitude is pruned and growth regrows as many as the regular step dropped, so
        ties shrink FB+'s net prune.
      reset_regrown: a weight pruned and regrown in the same update keeps its value and momentum
        by default (as the authors' code does; the paper's zero init is for connections "not
        activated in the last sparse topology"); ``True`` restarts it from zero like a new
        connection.
      gradient_topk: ``'empty'`` (paper, Section 3.3 / Algorithm 2: grow "g% parameters with the
        largest gradient" among those not active, so exactly the budget grows while there are
        empty positions) or ``'all'`` (the authors' ``gradient_growth``: top-k of ``|grad|`` over
        every position with the active ones scored 0, ties in position order as a stable sort
        gives). They differ once fewer empty positions than the budget have a non-zero gradient
        (dead taps, dead ReLUs): ``'all'`` then spends part of the budget on active positions,
        a no-op, and grows fewer weights.

    Returns ``(new_mask, pruned, grown)``: ``pruned`` are the positions switched off, ``grown`` the
    positions whose value and momentum must restart from zero (the new connections, plus the
    regrown ones if ``reset_regrown``). Fully dense (and empty) layers are left alone, as the
    reference's ``magnitude_death`` and ``random_growth`` skip them: under exact counts a layer
    never gets there without grow-more, under ``'random_bernoulli'`` it is an absorbing state.
    """
    if prune_ties not in PRUNE_TIES:
        raise ValueError(f"Unknown prune_ties {prune_ties!r}; allowed: {PRUNE_TIES}.")
    if growth not in GROWTH_MODES:
        raise ValueError(f"Unknown growth mode {growth!r}; allowed: {GROWTH_MODES}.")
    if gradient_topk not in GRADIENT_TOPK:
        raise ValueError(f"Unknown gradient_topk {gradient_topk!r}; allowed: {GRADIENT_TOPK}.")
    shape = mask.shape
    mask = np.asarray(mask).reshape(-1) > 0.5
    numel = mask.size
    nnz = int(mask.sum())
    none = np.zeros(numel, bool)
    if nnz == numel or nnz == 0:
        return mask.reshape(shape).astype(np.float32), none.reshape(shape), none.reshape(shape)
    removed, grown = update_counts(nnz, numel, k, prune_more, grow_more, prune_ratio,
                                   growth_ratio)
    base = update_counts(nnz, numel, k)[1]  # the regular growth budget
    magnitude = np.abs(np.asarray(weights, np.float64).reshape(-1)) * mask
    if prune_ties == "exact":
        new_mask = _prune_exact(magnitude, mask, removed)
    else:
        regular_keep = _prune_threshold(magnitude, numel, nnz, base) & mask
        base = nnz - int(regular_keep.sum())  # the reference's pruned_number
        grown = base
        if grow_more:
            grown = min(int(base * (1.0 + growth_ratio)), numel)
        new_mask = (_prune_threshold(magnitude, numel, nnz, removed) & mask if prune_more
                    else regular_keep)
    candidates = np.flatnonzero(~new_mask)
    if growth == "gradient":
        g = np.abs(np.asarray(grad, np.float64).reshape(-1))
        if gradient_topk == "empty":
            grown = min(grown, candidates.size)
            chosen = candidates[np.argsort(-g[candidates], kind="stable")[:grown]]
        else:  # the reference: top-k over every position, active ones scored 0
            order = np.argsort(-np.where(new_mask, 0.0, g), kind="stable")[:min(grown, numel)]
            chosen = order[~new_mask[order]]
    elif growth == "random_bernoulli":
        rng = rng if rng is not None else np.random.default_rng()
        target = base * (1.0 + growth_ratio) if grow_more else base
        chosen = bernoulli_growth(candidates, target, rng)
    else:
        rng = rng if rng is not None else np.random.default_rng()
        if grow_more:
            grown = random_grow_more_count(base, growth_ratio, candidates.size, rng)
        grown = min(grown, candidates.size)
        chosen = rng.choice(candidates, size=grown, replace=False)
    new_mask[chosen] = True
    pruned = mask & ~new_mask
    restart = ~mask & new_mask
    if reset_regrown:
        regrown = np.zeros(numel, bool)
        regrown[chosen] = True
        restart |= regrown & mask
    return (new_mask.reshape(shape).astype(np.float32), pruned.reshape(shape),
            restart.reshape(shape))


class DynamicSparsity(keras.callbacks.Callback):
    """Flying Bird (``plus=False``) or Flying Bird+ (``plus=True``) mask updates during ``fit``.

    Works with any model whose masked layers come from birds_tf (``birds_tf.sparsify`` converts
    a user's model); gradient growth needs the ``AdversarialModel`` trainer, which records the
    dense gradients. Defaults are the paper's where it gives a value (``k_min``, ``t_start`` and
    the trigger comparisons, which it leaves open, are the reference code's); ``delta_t_late``,
    ``growth='random_bernoulli'``, ``gradient_topk='all'``, ``threshold=0.5`` and
    ``prune_ties='threshold'`` give the reference code's behaviour
    (``gin/table1/fb_plus_resnet18_official_code.gin``).

    Args:
      plus: Flying Bird+ (adaptive prune/grow) instead of Flying Bird.
      delta_t: iterations between mask updates; ``delta_t_late`` (reference) replaces it once the
        0-indexed epoch is past half of training.
      k_init, k_min: the cosine schedule of the update ratio.
      growth: ``'gradient'`` (paper), ``'random'`` (an exact count drawn at random) or
        ``'random_bernoulli'`` (the reference's default, a Bernoulli draw per empty position;
        see ``update_layer_mask``).
      gradient_topk: ``'empty'`` (paper) or ``'all'`` (the reference's top-k over all
        positions); only used by gradient growth (see ``update_layer_mask``).
      prune_ratio, growth_ratio, threshold, queue_length: FB+'s factors, trigger threshold and
        window (see ``fb_plus_triggers``).
      t_start: first 0-indexed epoch whose updates may use the FB+ triggers (Algorithm 2's
        ``t > t_start`` with 1-indexed epochs); ``None``: ``epochs // 2`` (the paper gives no
        value; half of training is the reference's ``--dynamic_epoch`` 100 of 200).
      total_steps: iterations of the whole run (``None``: taken from ``fit``).
      prune_ties: ``'exact'`` or ``'threshold'`` (see ``update_layer_mask``).
      reset_regrown: restart weights pruned and regrown in the same update from zero (off by
        default; see ``update_layer_mask``).
      seed: seed of random growth; ``None`` is 0 for a bare callback, and ``train_eval``'s Flying
        Bird methods derive it from ``train_eval.seed``.
    """

    def __init__(self, plus=False, delta_t=2000, delta_t_late=None, k_init=0.5, k_min=0.005,
                 growth="gradient", prune_ratio=0.4, growth_ratio=0.05, threshold=0.75,
                 queue_length=5, t_start=None, total_steps=None, seed=None, prune_ties="exact",
                 reset_regrown=False, gradient_topk="empty", verbose=True):
        super().__init__()
        _check_int("delta_t", delta_t, 1)
        if delta_t_late is not None:
            _check_int("delta_t_late", delta_t_late, 1)
        _check_int("queue_length", queue_length, 2)
        if growth not in GROWTH_MODES:
            raise ValueError(f"Unknown growth mode {growth!r}; allowed: {GROWTH_MODES} "
                             "('gradient' paper, 'random_bernoulli' released code, 'random' "
                             "an exact count).")
        if gradient_topk not in GRADIENT_TOPK:
            raise ValueError(f"Unknown gradient_topk {gradient_topk!r}; allowed: "
                             f"{GRADIENT_TOPK} ('empty' paper, 'all' released code).")
        if not 0.0 < k_init <= 1.0 or not 0.0 <= k_min <= k_init:
            raise ValueError(f"Need 0 <= k_min <= k_init <= 1, got k_init={k_init!r}, "
                             f"k_min={k_min!r}.")
        for name, value in (("prune_ratio", prune_ratio), ("growth_ratio", growth_ratio),
                            ("threshold", threshold)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}.")
        if t_start is not None:
            _check_int("t_start", t_start, 0)
        if prune_ties not in PRUNE_TIES:
            raise ValueError(f"Unknown prune_ties {prune_ties!r}; allowed: {PRUNE_TIES} "
                             "('exact' paper, 'threshold' released code).")
        if seed is not None:
            _check_int("seed", seed, 0)
        if total_steps is not None:
            _check_int("total_steps", total_steps, 1)
        self.plus = bool(plus)
        self.delta_t = int(delta_t)
        self.delta_t_late = delta_t_late
        self.k_init, self.k_min = float(k_init), float(k_min)
        self.growth = growth
        self.prune_ratio, self.growth_ratio = float(prune_ratio), float(growth_ratio)
        self.threshold = float(threshold)
        self.queue_length = int(queue_length)
        self.t_start = t_start
        self.total_steps = total_steps
        self.prune_ties = prune_ties
        self.reset_regrown = bool(reset_regrown)
        self.gradient_topk = gradient_topk
        self.verbose = verbose
        self.step = 0
        self.epoch = 0
        self.gaps = collections.deque(maxlen=self.queue_length)
        self.losses = collections.deque(maxlen=self.queue_length)
        self.prune_more = self.grow_more = False
        self.events = []
        self.updates = 0
        self._epoch_updates = 0
        self._resumed_epoch_updates = None  # set_state: a mid-epoch state's count
        self.set_seed(seed)
        self._epochs = None

    def set_seed(self, seed):
        """(Re)seed random growth; ``train_eval`` passes the run's seed when none is bound."""
        self.seed = seed
        self._rng = np.random.default_rng([_GROWTH_SALT, 0 if seed is None else int(seed)])

    # -- schedule --------------------------------------------------------------------------------
    def _total(self):
        if self.total_steps is not None:
            return self.total_steps
        params = self.params or {}
        steps, epochs = params.get("steps"), params.get("epochs")
        if not steps or not epochs:
            raise ValueError("DynamicSparsity needs total_steps when fit() does not know the "
                             "number of steps per epoch (pass total_steps=epochs*steps).")
        return int(steps) * int(epochs)

    def current_delta_t(self):
        """``delta_t``, or the reference's ``delta_t_late`` after half of training."""
        epochs = (self.params or {}).get("epochs") or self._epochs
        if self.delta_t_late is not None and epochs and self.epoch > epochs / 2:
            return int(self.delta_t_late)
        return self.delta_t

    def k(self, step=None):
        return cosine_k(self.step if step is None else step, self._total(), self.k_init,
                        self.k_min)

    # -- Keras hooks ------------------------------------------------------------------------------
    def set_model(self, model):
        super().set_model(model)
        self._layers = masks_lib.require_masked_layers(model, "DynamicSparsity")
        if self.growth == "gradient":
            if not hasattr(model, "enable_dense_gradients"):
                raise ValueError("Gradient growth needs dense gradients from the training step: "
                                 "wrap the classifier in birds_tf.AdversarialModel, or use "
                                 "growth='random'.")
            model.enable_dense_gradients()

    def on_train_begin(self, logs=None):
        self._epochs = (self.params or {}).get("epochs")
        if self.t_start is None and self._epochs:
            self.t_start = int(self._epochs) // 2

    def on_epoch_begin(self, epoch, logs=None):
        # a state saved mid-epoch (SIGTERM) carries the updates this epoch already made
        resumed = self._resumed_epoch_updates
        self._epoch_updates = resumed if resumed is not None and epoch == self.epoch else 0
        self._resumed_epoch_updates = None
        self.epoch = epoch
        if self.plus and self.t_start is not None and epoch >= self.t_start:
            self.prune_more, self.grow_more = fb_plus_triggers(
                self.gaps, self.losses, self.queue_length, self.threshold)
        else:
            self.prune_more = self.grow_more = False

    def on_train_batch_begin(self, batch, logs=None):
        if self.growth == "gradient":
            due = (self.step + 1) % self.current_delta_t() == 0
            self.model.request_dense_gradients(due)

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.current_delta_t() == 0:
            self.update_masks()
            if self.growth == "gradient":
                self.model.request_dense_gradients(False)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        if self.plus and "train_ra" in logs and "val_ra" in logs:
            self.gaps.append(float(logs["train_ra"]) - float(logs["val_ra"]))
            self.losses.append(float(logs.get("val_robust_loss", np.nan)))
        logs["k"] = self.k()
        logs["mask_updates"] = float(self._epoch_updates)
        logs["prune_more"] = float(self.prune_more)
        logs["grow_more"] = float(self.grow_more)
        for layer in self._layers:
            logs[f"density/{layer.name}"] = masks_lib.layer_density(layer)

    # -- the update -------------------------------------------------------------------------------
    def _optimizer(self):
        opt = getattr(self.model, "optimizer", None)
        return getattr(opt, "inner_optimizer", opt)

    def update_masks(self):
        """One prune-and-grow step on every masked layer (public for custom loops and tests)."""
        k = self.k()
        optimizer = self._optimizer()
        allowed = self._allowed()
        before = after = 0
        grads = {}
        for layer in self._layers:
            kernel = np.asarray(layer.kernel.numpy())
            mask = np.asarray(layer.mask.numpy())
            grad = None
            if self.growth == "gradient":
                grad = grads[layer.name] = np.asarray(self.model.dense_gradient(layer).numpy())
            ok = allowed.get(layer.name)
            if ok is None:
                new_mask, pruned, grown = update_layer_mask(
                    kernel * mask, mask, grad, k, self.prune_more, self.grow_more,
                    self.prune_ratio, self.growth_ratio, self.growth, self._rng,
                    self.prune_ties, self.reset_regrown, self.gradient_topk)
            else:  # only the allowed entries take part; the rest stay pruned
                sub_mask, pruned_ok, grown_ok = update_layer_mask(
                    (kernel * mask)[ok], mask[ok], None if grad is None else grad[ok], k,
                    self.prune_more, self.grow_more, self.prune_ratio, self.growth_ratio,
                    self.growth, self._rng, self.prune_ties, self.reset_regrown,
                    self.gradient_topk)
                new_mask = np.zeros_like(mask)
                pruned = np.zeros(mask.shape, bool)
                grown = np.zeros(mask.shape, bool)
                new_mask[ok], pruned[ok], grown[ok] = sub_mask, pruned_ok, grown_ok
            keep = (new_mask > 0) & ~pruned & ~grown
            masks_lib.assign_mask_and_reset(layer, new_mask, keep, optimizer)
            before += int(mask.sum())
            after += int(new_mask.sum())
        self.updates += 1
        self._epoch_updates += 1
        event = {"step": self.step, "epoch": self.epoch + 1, "k": k, "nnz_before": before,
                 "nnz_after": after, "prune_more": bool(self.prune_more),
                 "grow_more": bool(self.grow_more)}
        self.events.append(event)
        self._after_update(grads)
        return event

    def _allowed(self):
        """``{layer name: boolean array}`` of the entries an update may touch; a layer not
        named takes part whole. Flying Bird: every entry (subclasses narrow it)."""
        return {}

    def _after_update(self, grads):
        """Called after each mask update with the dense gradients it used (``{}`` for random
        growth); a hook for subclasses (channel removal)."""

    # -- checkpointed state -------------------------------------------------------------------------
    def get_state(self):
        return {"step": self.step, "epoch": self.epoch, "gaps": list(self.gaps),
                "losses": list(self.losses), "events": [dict(e) for e in self.events],
                "updates": self.updates,
                "t_start": self.t_start, "rng": self._rng.bit_generator.state,
                "epoch_updates": self._epoch_updates}

    def set_state(self, state):
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.gaps = collections.deque(state["gaps"], maxlen=self.queue_length)
        self.losses = collections.deque(state["losses"], maxlen=self.queue_length)
        self.events = list(state["events"])
        self.updates = int(state["updates"])
        self.t_start = state.get("t_start", self.t_start)
        self._rng.bit_generator.state = state["rng"]
        self._resumed_epoch_updates = state.get("epoch_updates")
