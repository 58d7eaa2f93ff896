"""Attacks by name, and ``run_attack``: batched robust accuracy with per-example flags.

Defaults: PGD-20 at step eps/4 (2/255 at eps 8/255), 20 steps, 1 restart (paper Section 4; the
authors' code at 6e9a862 evaluates with advertorch's LinfPGDAttack, random start, no restarts);
CW-L2 with the parameters of the paper's Appendix A3.2: c = 0.1, 1 binary-search step, 100 Adam
iterations at lr 0.01 (the paper says "CW Attack" and names the learning rate, not the norm or
the optimizer: L2 is inferred from these parameters; unbounded: ``eps`` does not apply); CW-inf
(PGD-20 on the CW margin loss, an L-inf variant offered as an assumption; neither the paper nor
the released code uses it);
APGD-CE 100 iterations 1 restart; APGD-T and FAB-T 100 iterations 9 targets; Square 5000 queries;
AutoAttack standard. Any setting can be overridden by keyword.
"""
import inspect
import time

import numpy as np
import tensorflow as tf

from birds_tf.attacks import _common
from birds_tf.attacks.apgd import apgd, apgd_targeted
from birds_tf.attacks.autoattack import autoattack
from birds_tf.attacks.cw import cw_l2
from birds_tf.attacks.fab import fab_t
from birds_tf.attacks.pgd_restarts import pgd_restarts
from birds_tf.attacks.square import square

ATTACKS = {
    "pgd20": (pgd_restarts, dict(steps=20, restarts=1, loss="ce")),
    "cw_inf": (pgd_restarts, dict(steps=20, restarts=1, loss="cw")),
    "cw_l2": (cw_l2, dict(c=0.1, steps=100, learning_rate=0.01, binary_search_steps=1,
                          confidence=0.0)),
    "apgd_ce": (apgd, dict(n_iter=100, n_restarts=1, loss="ce")),
    "apgd_t": (apgd_targeted, dict(n_iter=100, n_restarts=1, n_target_classes=9)),
    "fab_t": (fab_t, dict(n_iter=100, n_restarts=1, n_target_classes=9)),
    "square": (square, dict(n_queries=5000, p_init=0.8, n_restarts=1)),
    "autoattack": (autoattack, dict(checks=False)),
}

UNBOUNDED = ("cw_l2",)  # robust accuracy is "still right on the returned example", no norm ball


def names():
    return tuple(ATTACKS)


def lookup(name):
    if not isinstance(name, str) or name not in ATTACKS:
        raise ValueError(f"Unknown attack {name!r}; allowed: {list(ATTACKS)}.")
    return ATTACKS[name]


def resolve_kwargs(name, defaults, eps, overrides):
    """Defaults, then eps (and PGD's eps/4 step), then the caller's overrides."""
    fn = ATTACKS[name][0]
    params = inspect.signature(fn).parameters
    bad = sorted(k for k in overrides if k not in params or k in ("model", "x", "y"))
    if bad:
        allowed = [k for k in params if k not in ("model", "x", "y", "eps")]
        raise ValueError(f"Attack {name!r} has no option(s) {bad}; allowed: {allowed}.")
    kwargs = dict(defaults)
    if "eps" in params:
        kwargs["eps"] = eps
    if name in ("pgd20", "cw_inf"):
        kwargs["step_size"] = eps / 4
    kwargs.update(overrides)
    return kwargs


def run_attack(name, model, x, y, eps=8 / 255, batch_size=256, return_adv=False,
               first_batch=0, **overrides):
    """Robust accuracy of ``model`` under attack ``name`` on (x, y), batch by batch.

    Attacks with a ``seed`` get ``_common.batch_seed(seed, batch index)`` per batch, so batches
    draw different random starts; ``first_batch`` is the index of the first batch, for callers
    that split the data themselves.

    Returns dict(robust_accuracy (percent), clean_accuracy (percent), n, seconds, robust
    (np.bool_ per example), name, eps) and ``x_adv`` if ``return_adv``. Clean-misclassified
    examples are not robust and are not attacked.

    Args:
      name: a registry name (``names()``: pgd20, cw_l2, cw_inf, apgd_ce, apgd_t, fab_t, square,
        autoattack).
      model: a callable mapping [0, 1] images to logits.
      x: images in [0, 1], NHWC.
      y: integer labels, shape (N,).
      eps: the L-inf radius (ignored by cw_l2, which has none).
      batch_size: examples per attack call.
      return_adv: also return the adversarial images.
      first_batch: the index of the first batch, for the per-batch seeds.
      **overrides: keyword settings of the attack replacing its standard ones.
    """
    fn, defaults = lookup(name)
    eps = _common.check_eps(eps)
    batch_size = _common.check_positive_int(batch_size, "batch_size")
    kwargs = resolve_kwargs(name, defaults, eps, overrides)
    x, y = _common.as_inputs(x, y)
    start = time.time()
    base_seed = kwargs.get("seed", inspect.signature(fn).parameters.get("seed"))
    if isinstance(base_seed, inspect.Parameter):
        base_seed = base_seed.default
    robust, clean, advs = [], [], []
    for i, lo in enumerate(range(0, int(x.shape[0]), batch_size)):
        xb, yb = x[lo:lo + batch_size], y[lo:lo + batch_size]
        if base_seed is not None:
            kwargs["seed"] = _common.batch_seed(base_seed, first_batch + i)
        adv = tf.convert_to_tensor(fn(model, xb, yb, **kwargs), tf.float32)
        if name not in UNBOUNDED:  # belt and braces: never score a point outside the ball
            adv = _common.project_linf(adv, xb, eps)
        ok = _common.predict_labels(model, xb) == yb
        clean.append(ok.numpy())
        robust.append((ok & (_common.predict_labels(model, adv) == yb)).numpy())
        if return_adv:
            advs.append(adv.numpy())
    robust = np.concatenate(robust).astype(np.bool_) if robust else np.zeros(0, np.bool_)
    clean = np.concatenate(clean) if clean else np.zeros(0, np.bool_)
    n = int(robust.size)
    out = dict(robust_accuracy=float(100.0 * robust.mean()) if n else 0.0,
               clean_accuracy=float(100.0 * clean.mean()) if n else 0.0,
               n=n, seconds=time.time() - start, robust=robust, name=name, eps=eps)
    if return_adv:
        out["x_adv"] = np.concatenate(advs) if advs else x.numpy()
    return out
