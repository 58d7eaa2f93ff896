"""Carlini-Wagner L2 (untargeted) with the paper's parameters: 1 binary-search step, c = 0.1, 100
iterations at learning rate 0.01 (Appendix A3.2); Adam and confidence 0 are CW's own defaults,
which the paper does not restate. The paper says only "CW Attack": that it is the L2 attack is
inferred from these parameters (a search on c and an optimiser's learning rate belong to CW-L2,
not to an L-inf PGD on the CW loss).

Optimises ``w`` with ``x' = (tanh(w) + 1) / 2`` so the box [0, 1] holds without clipping, minimising
``||x' - x||^2 + c * max(z_y - max_{j!=y} z_j, -confidence)`` per example. The returned image is
the smallest-L2 misclassified iterate, or the clean image when no iterate was misclassified, so
robust accuracy is "the model is still right on the returned examples". No early abort: more
iterations can only find more (or smaller) adversarial examples.
"""
import numpy as np
import tensorflow as tf

from birds_tf.attacks import _common

_TANH_SCALE = 0.999999  # keeps atanh finite at pixels equal to 0 or 1 (Carlini's constant)


def _to_tanh_space(x):
    return tf.atanh((2.0 * x - 1.0) * _TANH_SCALE)


def _from_tanh_space(w):
    return (tf.tanh(w) + 1.0) / 2.0


def _cw_core(model, x, y, const, steps, lr, confidence, beta1=0.9, beta2=0.999, adam_eps=1e-8):
    """One binary-search step: Adam (hand-rolled, so no optimizer state lives in the graph)."""
    w = _to_tanh_space(x)
    x_ref = _from_tanh_space(w)  # the clean image as tanh-space reconstructs it (Carlini's choice)
    m = tf.zeros_like(w)
    v = tf.zeros_like(w)
    best_l2 = tf.fill(tf.shape(y), tf.constant(np.inf, tf.float32))
    best_adv = x

    def success(logits):
        true, other = _common.true_and_best_other(logits, y)
        return other > true + confidence  # the class after lowering z_y by kappa is not y

    def body(t, w, m, v, best_l2, best_adv):
        with tf.GradientTape() as tape:
            tape.watch(w)
            x_new = _from_tanh_space(w)
            logits = tf.cast(model(x_new, training=False), tf.float32)
            true, other = _common.true_and_best_other(logits, y)
            l2 = tf.reduce_sum(tf.reshape(tf.square(x_new - x_ref), [tf.shape(x)[0], -1]), axis=1)
            f = tf.maximum(true - other, -confidence)
            total = tf.reduce_sum(l2 + const * f)
        grad = tape.gradient(total, w, unconnected_gradients=_common.ZERO_GRAD)
        # The iterate is judged before it is updated (as in Carlini's code).
        better = success(logits) & (l2 < best_l2)
        best_l2 = tf.where(better, l2, best_l2)
        best_adv = tf.where(_common.bcast(better, x), x_new, best_adv)
        t1 = tf.cast(t + 1, tf.float32)
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * tf.square(grad)
        lr_t = lr * tf.sqrt(1 - beta2 ** t1) / (1 - beta1 ** t1)
        w = w - lr_t * m / (tf.sqrt(v) + adam_eps)
        return t + 1, w, m, v, best_l2, best_adv

    _, w, _, _, best_l2, best_adv = tf.while_loop(
        lambda t, *_: t < steps, body, (tf.constant(0), w, m, v, best_l2, best_adv),
        maximum_iterations=steps)
    # The last Adam update is judged too, so all `steps` iterates count.
    x_last = _from_tanh_space(w)
    logits = tf.cast(model(x_last, training=False), tf.float32)
    l2 = tf.reduce_sum(tf.reshape(tf.square(x_last - x_ref), [tf.shape(x)[0], -1]), axis=1)
    better = success(logits) & (l2 < best_l2)
    best_l2 = tf.where(better, l2, best_l2)
    best_adv = tf.where(_common.bcast(better, x), x_last, best_adv)
    return tf.clip_by_value(best_adv, 0.0, 1.0), best_l2


def cw_l2(model, x, y, c=0.1, steps=100, learning_rate=0.01, binary_search_steps=1,
          confidence=0.0):
    """Untargeted CW-L2 adversarial images (a tf.Tensor); failures come back as the clean image.

    The paper's "CW" row (CW-L2 inferred from its parameters, see the module docstring):
    Carlini & Wagner's L2 attack in tanh space with Adam; no eps, so it
    scores how far the decision boundary is, not robustness inside an L-inf ball.

    Args:
      model: a callable mapping [0, 1] images to logits.
      x: images in [0, 1], NHWC.
      y: integer labels, shape (N,).
      c: the weight of the misclassification term against the L2 distance.
      steps: Adam steps per binary-search step.
      learning_rate: Adam's learning rate.
      binary_search_steps: rounds of the binary search on ``c`` (1: ``c`` as given).
      confidence: the logit margin the adversarial class must win by (kappa).
    """
    c = _common.check_eps(c, "c")
    steps = _common.check_positive_int(steps, "steps")
    binary_search_steps = _common.check_positive_int(binary_search_steps, "binary_search_steps")
    learning_rate = _common.check_eps(learning_rate, "learning_rate")
    confidence = _common.check_eps(confidence, "confidence")
    x, y = _common.as_inputs(x, y)

    def build(get_model):
        def fn(x, y, const):
            return _cw_core(get_model(), x, y, const, steps, learning_rate, confidence)
        return fn, (tf.TensorSpec((None,), tf.float32),)
    core = _common.compiled(model, ("cw_l2", steps, learning_rate, confidence), build, x)

    n = int(x.shape[0])
    x_adv = x.numpy().copy()
    best_l2 = np.full(n, np.inf, np.float32)
    const = np.full(n, c, np.float32)
    lower = np.zeros(n, np.float32)
    upper = np.full(n, 1e10, np.float32)
    todo = (_common.predict_labels(model, x) == y).numpy()
    idx = np.flatnonzero(todo)
    if idx.size == 0:
        return tf.convert_to_tensor(x_adv)
    xs, ys = tf.gather(x, idx), tf.gather(y, idx)
    for _ in range(binary_search_steps):
        adv, l2 = core(xs, ys, tf.constant(const[idx]))
        adv, l2 = adv.numpy(), l2.numpy()
        found = np.isfinite(l2)
        improve = found & (l2 < best_l2[idx])
        x_adv[idx[improve]] = adv[improve]
        best_l2[idx[improve]] = l2[improve]
        # Carlini's update of c: shrink towards the last success, grow x10 until one is found.
        ci = const[idx]
        upper[idx[found]] = np.minimum(upper[idx[found]], ci[found])
        lower[idx[~found]] = np.maximum(lower[idx[~found]], ci[~found])
        has_upper = upper[idx] < 1e9
        ci = np.where(has_upper, (lower[idx] + upper[idx]) / 2, ci * 10)
        const[idx] = ci
    return tf.convert_to_tensor(x_adv)
