"""FAB-T: targeted Fast Adaptive Boundary attack, L-inf (Croce & Hein 2020), as AutoAttack runs it.

FAB looks for the smallest perturbation that reaches the decision boundary towards a target class:
each step linearises ``z_t - z_y`` and projects both the current point and the clean image onto
the linearised boundary within the box [0, 1] (minimal L-inf distance), then moves to a convex
combination of the two projections (weight on the clean one at most ``alpha_max``, overshoot
``eta``); when a step lands on an adversarial point it is recorded if smaller than the best so far
and the iterate is pulled back towards the clean image by ``beta``. An example counts as broken
only when the best adversarial point lies within ``eps``. Targets are the 2nd, 3rd, ... most
likely clean classes; the first restart starts at the clean image, later ones at random points
in the eps/2 ball.
"""
import numpy as np
import tensorflow as tf
from absl import logging as absl_logging

from birds_tf.attacks import _common


def project_linf_hyperplane_box(t, w, b):
    """Smallest-L-inf ``d`` with ``w.(t + d) = b`` and ``t + d`` in [0, 1], row by row.

    If the hyperplane cannot be reached inside the box, ``d`` moves to the box corner that gets
    closest. With a budget ``lam`` the best move is ``d_i = -sign(w_i) * min(lam, p_i)``, where
    ``p_i`` is how far coordinate i can go; the reachable change of ``w.z`` is piecewise linear in
    ``lam`` with breaks at the sorted ``p_i``, so the right piece is found by one comparison per
    break (the original does a binary search over the same breaks).
    """
    t = tf.convert_to_tensor(t, tf.float32)
    w = tf.convert_to_tensor(w, tf.float32)
    b = tf.convert_to_tensor(b, tf.float32)
    sign = tf.where(tf.reduce_sum(w * t, 1) - b >= 0, 1.0, -1.0)
    w = w * sign[:, None]
    b = b * sign  # now w.t >= b: w.z has to decrease by gap = w.t - b
    towards_one = tf.cast(w < 0, tf.float32)  # coordinates that move up (to 1) lower w.z
    nonzero = tf.cast(tf.not_equal(w, 0.0), tf.float32)
    d_corner = (towards_one - t) * nonzero
    room = towards_one - t * (2.0 * towards_one - 1.0)  # p_i: distance to that bound
    slack = b - tf.reduce_sum(w * t, 1)  # -gap, <= 0
    at_corner = tf.reduce_sum(w * d_corner, 1)  # change of w.z at the corner, <= slack if reachable
    order = tf.argsort(room, axis=1, direction="DESCENDING", stable=True)
    room_sorted = tf.gather(room, order, batch_dims=1)
    abs_w_sorted = tf.abs(tf.gather(w, order, batch_dims=1))
    cum_w = tf.cumsum(abs_w_sorted, axis=1)
    # change of w.z achievable with lam equal to the k-th largest room, as cum - lam * cum_w:
    cum = tf.cumsum(abs_w_sorted * room_sorted, axis=1) + at_corner[:, None]
    at_break = cum - cum_w * room_sorted  # non-decreasing in k
    below_smallest = slack - at_break[:, -1] > 0  # lam smaller than every room
    reachable = (slack - at_corner > 0) & ~below_smallest
    k = tf.reduce_sum(tf.cast(slack[:, None] - at_break > 0, tf.int32), axis=1) - 1
    k = tf.clip_by_value(k, 0, tf.shape(t)[1] - 1)
    cum_k = tf.gather(cum, k, batch_dims=1)
    cum_w_k = tf.gather(cum_w, k, batch_dims=1)
    lam_mid = tf.maximum((slack - cum_k) / -tf.maximum(cum_w_k, 1e-30), 0.0)
    lam_small = tf.maximum((slack - cum[:, -1]) / -tf.maximum(cum_w[:, -1], 1e-30), 0.0)
    d_small = (2.0 * towards_one - 1.0) * lam_small[:, None]
    lam = lam_mid[:, None]
    d_mid = tf.minimum(lam, d_corner) * towards_one + tf.maximum(-lam, d_corner) * (1 - towards_one)
    d = tf.where(below_smallest[:, None], d_small, tf.where(reachable[:, None], d_mid, d_corner))
    return d * nonzero


def _fab_core(model, x, y, y_target, seed, use_rand_start, eps, n_iter, alpha_max, eta, beta):
    """One targeted run on a batch: (smallest adversarial found or x, its L-inf norm or +inf)."""
    batch = tf.shape(x)[0]
    flat = lambda v: tf.reshape(v, [batch, -1])  # noqa: E731
    x0 = flat(x)
    t = tf.random.stateless_uniform(tf.shape(x), seed, -1.0, 1.0, dtype=tf.float32)
    start = x + 0.5 * eps * t / _common.bcast(_common.linf_norm(t), x)
    x1 = tf.clip_by_value(tf.where(use_rand_start, start, x), 0.0, 1.0)
    best = x
    best_norm = tf.fill([batch], tf.constant(np.inf, tf.float32))

    def body(i, x1, best, best_norm):
        with tf.GradientTape() as tape:
            tape.watch(x1)
            logits = tf.cast(model(x1, training=False), tf.float32)
            diff = tf.gather(logits, y_target, batch_dims=1) - tf.gather(logits, y, batch_dims=1)
            total = tf.reduce_sum(diff)
        grad = flat(tape.gradient(total, x1, unconnected_gradients=_common.ZERO_GRAD))
        x1f = flat(x1)
        offset = -diff + tf.reduce_sum(grad * x1f, 1)  # boundary: grad.z = offset
        d = project_linf_hyperplane_box(tf.concat([x1f, x0], 0), tf.concat([grad, grad], 0),
                                        tf.concat([offset, offset], 0))
        d1, d2 = d[:batch], d[batch:]
        a0 = tf.maximum(tf.reduce_max(tf.abs(d), 1), 1e-8)
        a1, a2 = a0[:batch], a0[batch:]
        alpha = tf.clip_by_value(a1 / (a1 + a2), 0.0, alpha_max)[:, None]
        x1f = tf.clip_by_value((x1f + eta * d1) * (1 - alpha) + (x0 + eta * d2) * alpha, 0.0, 1.0)
        x1 = tf.reshape(x1f, tf.shape(x))
        pred = tf.argmax(model(x1, training=False), axis=-1, output_type=tf.int32)
        is_adv = pred != y
        norm = tf.reduce_max(tf.abs(x1f - x0), 1)
        better = is_adv & (norm < best_norm)
        best = tf.where(_common.bcast(better, x), x1, best)
        best_norm = tf.where(better, norm, best_norm)
        x1 = tf.where(_common.bcast(is_adv, x), x + (x1 - x) * beta, x1)
        return i + 1, x1, best, best_norm

    _, _, best, best_norm = tf.while_loop(
        lambda i, *_: i < n_iter, body, (tf.constant(0), x1, best, best_norm),
        maximum_iterations=n_iter)
    return best, best_norm


def fab_t(model, x, y, eps=8 / 255, n_iter=100, n_restarts=1, n_target_classes=9, alpha_max=0.1,
          eta=1.05, beta=0.9, seed=0):
    """Targeted FAB (L-inf); returns adversarial images (the clean image where none is in eps).

    Args:
      model: a callable mapping [0, 1] images to logits.
      x: images in [0, 1], NHWC.
      y: integer labels, shape (N,).
      eps: the L-inf radius an adversarial image must lie in to count.
      n_iter: iterations per restart and target.
      n_restarts: restarts per target class.
      n_target_classes: target classes, the most likely wrong ones first (at most classes - 1).
      alpha_max: the largest weight of the clean image's projection in each step (FAB's bias
        towards the original point).
      eta: the overshoot factor of each step.
      beta: the backward step towards the clean image after a success.
      seed: seeds the random starts.
    """
    eps = _common.check_eps(eps)
    n_iter = _common.check_positive_int(n_iter, "n_iter")
    n_restarts = _common.check_positive_int(n_restarts, "n_restarts")
    n_target_classes = _common.check_positive_int(n_target_classes, "n_target_classes")
    x, y = _common.as_inputs(x, y)
    if x.shape[0] == 0:
        return x
    n_classes = int(_common.logits_of(model, x[:1]).shape[-1])
    if n_target_classes > n_classes - 1:
        absl_logging.warning("FAB-T: %d target classes requested but only %d exist; using %d.",
                             n_target_classes, n_classes - 1, n_classes - 1)
        n_target_classes = n_classes - 1

    def build(get_model):
        def fn(x, y, y_target, seed, use_rand_start, eps):
            return _fab_core(get_model(), x, y, y_target, seed, use_rand_start, eps, n_iter,
                             float(alpha_max), float(eta), float(beta))
        return fn, (tf.TensorSpec((None,), tf.int32), tf.TensorSpec((2,), tf.int32),
                    tf.TensorSpec((), tf.bool), tf.TensorSpec((), tf.float32))
    core = _common.compiled(model, ("fab_t", n_iter, float(alpha_max), float(eta), float(beta)),
                            build, x)
    adv = x.numpy().copy()
    y_np = y.numpy()
    robust = (_common.predict_labels(model, x) == y).numpy()
    for idx, restart, y_target, seed_pair in _common.targeted_runs(
            model, x, robust, n_target_classes, n_restarts, seed):
        best, best_norm = core(tf.gather(x, idx), tf.gather(y, idx), y_target, seed_pair,
                               tf.constant(restart > 0), tf.constant(eps, tf.float32))
        best = best.numpy()
        fooled = ((best_norm.numpy() <= eps)
                  & (_common.predict_labels(model, best).numpy() != y_np[idx]))
        robust[idx[fooled]] = False
        adv[idx[fooled]] = best[fooled]
    return tf.convert_to_tensor(adv)
