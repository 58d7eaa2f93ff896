"""Square Attack, L-inf (Andriushchenko et al. 2020), score-based, as AutoAttack runs it.

Starts at vertical stripes of +-eps; each query proposes a square window set to a random vertex
(+-eps per channel) of the ball and keeps it if the margin loss ``z_y - max_{j!=y} z_j`` drops
(or the example becomes misclassified). The window side is ``round(sqrt(p * h * w))`` with
``p = p_init / 2^m`` halving after 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 queries
(AutoAttack's ``resc_schedule=False``; with ``resc_schedule=True`` the breakpoints scale with
``n_queries / 10000``). Examples stop being queried once misclassified.

Difference from AutoAttack's PyTorch code: the window position and signs are drawn per example,
as in the original Square Attack code, instead of one draw shared by the whole batch.
"""
import numpy as np
import tensorflow as tf

from birds_tf.attacks import _common

_BREAKS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_selection(p_init, it, n_queries, resc_schedule=False):
    """Fraction of pixels the window covers at query ``it`` (float32 tensor)."""
    it = tf.cast(it, tf.float32)
    if resc_schedule:
        it = tf.floor(it / float(n_queries) * 10000.0)
    halvings = tf.reduce_sum(tf.cast(it > tf.constant(_BREAKS, tf.float32), tf.float32))
    return p_init / tf.pow(2.0, halvings)


def _random_signs(shape, seed):
    return tf.where(tf.random.stateless_uniform(shape, seed) < 0.5, -1.0, 1.0)


def _margin(model, x, y):
    logits = tf.cast(model(x, training=False), tf.float32)
    true, other = _common.true_and_best_other(logits, y)
    return true - other


def _square_core(model, x, y, seed, eps, n_queries, p_init, resc_schedule):
    """One run: (best point, its margin); margin <= 0 means misclassified."""
    batch = tf.shape(x)[0]
    h, w, c = (x.shape[i] if x.shape[i] is not None else tf.shape(x)[i] for i in (1, 2, 3))
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    fold = tf.random.experimental.stateless_fold_in
    stripes = _random_signs([batch, 1, w, c], fold(seed, 0))
    x_best = tf.clip_by_value(x + eps * stripes, 0.0, 1.0)
    margin_min = _margin(model, x_best, y)
    loss_min = margin_min
    rows = tf.range(h)[None, :, None, None]
    cols = tf.range(w)[None, None, :, None]

    def body(i, x_best, margin_min, loss_min):
        active = margin_min > 0.0
        p = p_selection(p_init, i, n_queries, resc_schedule)
        s = tf.cast(tf.maximum(tf.round(tf.sqrt(p * hf * wf)), 1.0), tf.int32)
        s = tf.minimum(s, tf.minimum(h, w))
        u = tf.random.stateless_uniform([batch, 2], fold(seed, 2 * i + 1))
        # integer corner in [0, h - s) as in the original (the last position is never drawn)
        vh = tf.cast(tf.floor(u[:, 0] * tf.cast(h - s, tf.float32)), tf.int32)[:, None, None, None]
        vw = tf.cast(tf.floor(u[:, 1] * tf.cast(w - s, tf.float32)), tf.int32)[:, None, None, None]
        window = (rows >= vh) & (rows < vh + s) & (cols >= vw) & (cols < vw + s)
        signs = _random_signs([batch, 1, 1, c], fold(seed, 2 * i + 2))
        x_new = x_best + tf.cast(window, tf.float32) * 2.0 * eps * signs
        x_new = _common.project_linf(x_new, x, eps)
        margin = _margin(model, x_new, y)
        loss = margin
        improved = active & (loss < loss_min)
        loss_min = tf.where(improved, loss, loss_min)
        keep = improved | (active & (margin <= 0.0))
        margin_min = tf.where(keep, margin, margin_min)
        x_best = tf.where(_common.bcast(keep, x), x_new, x_best)
        return i + 1, x_best, margin_min, loss_min

    _, x_best, margin_min, _ = tf.while_loop(
        lambda i, x_b, m, l: (i < n_queries) & tf.reduce_any(m > 0.0), body,
        (tf.constant(0), x_best, margin_min, loss_min), maximum_iterations=n_queries)
    return x_best, margin_min


def square(model, x, y, eps=8 / 255, n_queries=5000, p_init=0.8, n_restarts=1, seed=0,
           resc_schedule=False):
    """L-inf Square Attack on NHWC images; returns adversarial images (a tf.Tensor).

    Score-based (no gradients), so it is the cascade's check against gradient masking.

    Args:
      model: a callable mapping [0, 1] images to logits.
      x: images in [0, 1], NHWC.
      y: integer labels, shape (N,).
      eps: the L-inf radius.
      n_queries: model queries per example and restart.
      p_init: the initial fraction of pixels a square covers (halved on ``p_selection``'s
        schedule).
      n_restarts: restarts on the examples still robust.
      seed: seeds the square positions and signs.
      resc_schedule: scale the schedule's breakpoints to ``n_queries`` (AutoAttack's option).
    """
    eps = _common.check_eps(eps)
    n_queries = _common.check_positive_int(n_queries, "n_queries")
    n_restarts = _common.check_positive_int(n_restarts, "n_restarts")
    if not 0 < float(p_init) <= 1:
        raise ValueError(f"p_init must be in (0, 1], got {p_init!r}.")
    x, y = _common.as_inputs(x, y)
    if x.shape.rank != 4:
        raise ValueError(f"Square expects NHWC image batches, got shape {tuple(x.shape)}.")

    def build(get_model):
        def fn(x, y, seed, eps):
            return _square_core(get_model(), x, y, seed, eps, n_queries, float(p_init),
                                bool(resc_schedule))
        return fn, (tf.TensorSpec((2,), tf.int32), tf.TensorSpec((), tf.float32))
    core = _common.compiled(model, ("square", n_queries, float(p_init), bool(resc_schedule)),
                            build, x)
    adv = x.numpy().copy()
    y_np = y.numpy()
    robust = (_common.predict_labels(model, x) == y).numpy()
    for restart in range(n_restarts):
        idx = np.flatnonzero(robust)
        if idx.size == 0:
            break
        best, _ = core(tf.gather(x, idx), tf.gather(y, idx), _common.seed_pair(seed, restart),
                       tf.constant(eps, tf.float32))
        best = best.numpy()
        fooled = _common.predict_labels(model, best).numpy() != y_np[idx]
        robust[idx[fooled]] = False
        adv[idx[fooled]] = best[fooled]
    return tf.convert_to_tensor(adv)
