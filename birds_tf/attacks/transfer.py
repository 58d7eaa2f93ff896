"""Transfer (black-box) attacks: craft on a source model, evaluate on a target model.

Robustness of the target to examples it never saw gradients of; a target that resists its own
white-box attack but not transferred examples is a classic sign of gradient masking.
"""
import time

import numpy as np
import tensorflow as tf

from birds_tf.attacks import _common


def transfer_attack(source, target, x, y, attack, batch_size=256, **attack_kwargs):
    """Run ``attack(source, x, y, **attack_kwargs) -> x_adv`` batch by batch, score ``target``.

    ``attack`` is a callable or a registry name (then ``eps`` etc. go in ``attack_kwargs``).
    Returns dict(robust_accuracy, source_robust_accuracy (percent), n, seconds, robust
    (np.bool_ per example, on the target; clean-misclassified examples are not robust)).

    Args:
      source: the model the examples are crafted on.
      target: the model that is scored on them.
      x: images in [0, 1], NHWC.
      y: integer labels, shape (N,).
      attack: a callable ``(model, x, y, **kw) -> x_adv`` or a registry name such as "pgd20".
      batch_size: examples per attack call.
      **attack_kwargs: passed to the attack (``eps``, ``steps``, ...).
    """
    if isinstance(attack, str):
        from birds_tf.attacks import registry
        fn, defaults = registry.lookup(attack)
        eps = _common.check_eps(attack_kwargs.pop("eps", 8 / 255))
        kwargs = registry.resolve_kwargs(attack, defaults, eps, attack_kwargs)
        attack_fn = lambda m, xb, yb: fn(m, xb, yb, **kwargs)  # noqa: E731
    elif callable(attack):
        attack_fn = lambda m, xb, yb: attack(m, xb, yb, **attack_kwargs)  # noqa: E731
    else:
        raise ValueError(f"attack must be a callable or a registry name, got {attack!r}.")
    batch_size = _common.check_positive_int(batch_size, "batch_size")
    x, y = _common.as_inputs(x, y)
    start = time.time()
    robust_t, robust_s = [], []
    for lo in range(0, int(x.shape[0]), batch_size):
        xb, yb = x[lo:lo + batch_size], y[lo:lo + batch_size]
        adv = tf.convert_to_tensor(attack_fn(source, xb, yb), tf.float32)
        clean_t = _common.predict_labels(target, xb) == yb
        robust_t.append((clean_t & (_common.predict_labels(target, adv) == yb)).numpy())
        robust_s.append((_common.predict_labels(source, adv) == yb).numpy())
    robust_t = np.concatenate(robust_t) if robust_t else np.zeros(0, np.bool_)
    robust_s = np.concatenate(robust_s) if robust_s else np.zeros(0, np.bool_)
    n = int(robust_t.size)
    return dict(robust_accuracy=float(100.0 * robust_t.mean()) if n else 0.0,
                source_robust_accuracy=float(100.0 * robust_s.mean()) if n else 0.0,
                n=n, seconds=time.time() - start, robust=robust_t.astype(np.bool_))
