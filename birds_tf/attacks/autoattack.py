"""AutoAttack ``standard`` (L-inf): APGD-CE, APGD-T, FAB-T, Square, in that order.

Each attack runs only on the examples every earlier attack failed on, so an example is robust
only if all four fail; clean-misclassified examples are never attacked. Settings default to the
original standard version (APGD-CE 100 iterations 1 restart; APGD-T 100 iterations, 9 targets,
1 restart; FAB-T 100 iterations, 9 targets, 1 restart; Square 5000 queries, p_init 0.8) and can
be lowered (e.g. for tests) through the keyword arguments or ``options``.
"""
import collections
import time

import numpy as np
import tensorflow as tf
from absl import logging as absl_logging

from birds_tf.attacks import _common, sanity
from birds_tf.attacks.apgd import apgd, apgd_targeted
from birds_tf.attacks.fab import fab_t
from birds_tf.attacks.square import square

STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")

AutoAttackResult = collections.namedtuple(
    "AutoAttackResult", "x_adv robust robust_accuracy_after warnings")
AutoAttackResult.__doc__ = """x_adv (np.ndarray), robust (np.bool_ per example),
robust_accuracy_after (attack name -> percent, starting with "clean"), warnings (list of str)."""


def standard_settings(n_iter=100, n_restarts=1, n_target_classes=9, n_queries=5000):
    """Per-attack keyword arguments of the standard version (overridable for quick runs)."""
    return {
        "apgd-ce": dict(n_iter=n_iter, n_restarts=n_restarts, loss="ce"),
        "apgd-t": dict(n_iter=n_iter, n_restarts=1, n_target_classes=n_target_classes),
        "fab-t": dict(n_iter=n_iter, n_restarts=1, n_target_classes=n_target_classes),
        "square": dict(n_queries=n_queries, p_init=0.8, n_restarts=1),
    }


_FUNCS = {"apgd-ce": apgd, "apgd-t": apgd_targeted, "fab-t": fab_t, "square": square}


def autoattack(model, x, y, eps=8 / 255, attacks=STANDARD, n_iter=100, n_restarts=1,
               n_target_classes=9, n_queries=5000, options=None, seed=0, batch_size=None,
               checks=True, return_details=False):
    """Adversarial images from the AutoAttack cascade (an ``AutoAttackResult`` if
    ``return_details``).

    ``n_iter`` sets APGD-CE, APGD-T and FAB-T iterations, ``n_restarts`` APGD-CE's restarts,
    ``n_target_classes`` APGD-T's and FAB-T's targets, ``n_queries`` Square's budget; ``options``
    maps an attack name to further keyword overrides for it. ``batch_size`` bounds how many
    examples one attack call sees; ``checks`` runs AutoAttack's own sanity checks.

    Args:
      model: a callable mapping [0, 1] images to logits.
      x: images in [0, 1], NHWC.
      y: integer labels, shape (N,).
      eps: the L-inf radius.
      attacks: the cascade, in order (default APGD-CE, APGD-T, FAB-T, Square); each runs on the
        examples every earlier one left robust.
      n_iter: APGD-CE, APGD-T and FAB-T iterations.
      n_restarts: APGD-CE's restarts.
      n_target_classes: APGD-T's and FAB-T's target classes.
      n_queries: Square's query budget.
      options: ``{attack name: {keyword: value}}`` overriding that attack's settings.
      seed: seeds every attack's randomness.
      batch_size: examples per attack call (None: all at once).
      checks: run AutoAttack's sanity checks (warnings, e.g. randomised outputs).
      return_details: return an ``AutoAttackResult`` (per-attack robust accuracy and time)
        instead of the images alone.
    """
    eps = _common.check_eps(eps)
    unknown = [a for a in attacks if a not in _FUNCS]
    if unknown:
        raise ValueError(f"Unknown AutoAttack attack(s) {unknown}; allowed: {sorted(_FUNCS)}.")
    settings = standard_settings(n_iter, n_restarts, n_target_classes, n_queries)
    for name, extra in (options or {}).items():
        if name not in settings:
            raise ValueError(f"options names unknown attack {name!r}; allowed: {sorted(settings)}.")
        settings[name].update(extra)
    x, y = _common.as_inputs(x, y)
    n = int(x.shape[0])
    chunk = n if batch_size is None else _common.check_positive_int(batch_size, "batch_size")
    warnings = []
    x_adv = x.numpy().copy()
    y_np = y.numpy()
    robust = (_common.predict_labels(model, x, batch_size) == y).numpy()
    if checks and n:
        probe = x[:min(n, 250)]
        warnings += sanity.check_randomized(model, probe)
        warnings += sanity.check_range_output(model, probe)
        n_classes = int(_common.logits_of(model, probe[:1]).shape[-1])
        warnings += sanity.check_n_classes(n_classes, attacks,
                                           settings["apgd-t"]["n_target_classes"],
                                           settings["fab-t"]["n_target_classes"])
    ra_after = {"clean": float(100.0 * robust.mean()) if n else 0.0}
    start = time.time()
    for name in attacks:
        idx = np.flatnonzero(robust)
        if idx.size == 0:
            break
        for lo in range(0, idx.size, max(chunk, 1)):
            part = idx[lo:lo + chunk]
            # Salted per chunk, so chunks do not repeat each other's random starts.
            kwargs = {"eps": eps, "seed": _common.batch_seed(seed, lo // max(chunk, 1)),
                      **settings[name]}
            adv = _FUNCS[name](model, tf.gather(x, part), tf.gather(y, part), **kwargs).numpy()
            adv = _common.project_linf(adv, tf.gather(x, part), eps).numpy()
            fooled = _common.predict_labels(model, adv).numpy() != y_np[part]
            robust[part[fooled]] = False
            x_adv[part[fooled]] = adv[fooled]
        ra_after[name] = float(100.0 * robust.mean())
        absl_logging.info("AutoAttack: robust accuracy after %s: %.2f%% (%.1f s)", name,
                          ra_after[name], time.time() - start)
    if checks:
        warnings += sanity.check_square_sr(ra_after)
    x_adv = tf.convert_to_tensor(x_adv)
    if return_details:
        return AutoAttackResult(x_adv.numpy(), robust, ra_after, warnings)
    return x_adv
