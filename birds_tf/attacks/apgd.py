"""APGD-CE and APGD-T (targeted DLR), L-inf, following Croce & Hein (2020) and their code.

The step size starts at 2*eps and is halved at checkpoints: the first after 22% of the
iterations, each later interval 3% shorter, never below 6% (the paper's p_j). At a checkpoint an
example's step is halved, and it restarts from its best point, when the loss rose in at most
rho = 0.75 of the steps since the last checkpoint, or when the step was not halved last time and
the best loss has not improved since. Steps use momentum 0.75 (none on the first step). An
example counts as broken if any iterate misclassifies it (that iterate is returned).
"""
import numpy as np
import tensorflow as tf
from absl import logging as absl_logging

from birds_tf.attacks import _common

LOSSES = ("ce", "dlr", "dlr-targeted")


def _per_example_loss(logits, y, y_target, loss):
    if loss == "ce":
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
    z_sorted = tf.sort(logits, axis=-1)
    z_y = tf.gather(logits, y, batch_dims=1)
    if loss == "dlr":
        top_is_y = tf.cast(tf.argmax(logits, axis=-1, output_type=tf.int32) == y, logits.dtype)
        best_other = z_sorted[:, -2] * top_is_y + z_sorted[:, -1] * (1.0 - top_is_y)
        return -(z_y - best_other) / (z_sorted[:, -1] - z_sorted[:, -3] + 1e-12)
    z_t = tf.gather(logits, y_target, batch_dims=1)
    return -(z_y - z_t) / (z_sorted[:, -1] - 0.5 * (z_sorted[:, -3] + z_sorted[:, -4]) + 1e-12)


def schedule(n_iter):
    """(first checkpoint length, minimum length, shrink per checkpoint), as in the original."""
    return max(int(0.22 * n_iter), 1), max(int(0.06 * n_iter), 1), max(int(0.03 * n_iter), 1)


def _apgd_core(model, x, y, y_target, x_init, eps, n_iter, loss, rho):
    """One run on a batch: (best-loss point, still-robust flags, best loss, adversarial point)."""
    n_iter_2, n_iter_min, size_decr = schedule(n_iter)
    batch = tf.shape(x)[0]

    def loss_and_grad(x_adv):
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            logits = tf.cast(model(x_adv, training=False), tf.float32)
            per_example = _per_example_loss(logits, y, y_target, loss)
            total = tf.reduce_sum(per_example)
        grad = tape.gradient(total, x_adv, unconnected_gradients=_common.ZERO_GRAD)
        pred_ok = tf.argmax(logits, axis=-1, output_type=tf.int32) == y
        return per_example, grad, pred_ok

    x_adv = tf.clip_by_value(x_init, 0.0, 1.0)
    loss_now, grad, acc = loss_and_grad(x_adv)
    state = dict(
        x_adv=x_adv, x_adv_old=x_adv, grad=grad, x_best=x_adv, grad_best=grad,
        x_best_adv=x_adv, loss_best=loss_now, acc=acc,
        step=tf.fill([batch], 2.0 * eps),
        loss_steps=tf.zeros([n_iter, batch], tf.float32),
        loss_best_last_check=loss_now, reduced_last_check=tf.ones([batch], tf.bool),
        k=tf.constant(n_iter_2), counter3=tf.constant(0))

    def body(i, s):
        s = dict(s)
        x_adv = s["x_adv"]
        grad2 = x_adv - s["x_adv_old"]
        a = tf.where(i > 0, 0.75, 1.0)
        step = _common.bcast(s["step"], x)
        z = _common.project_linf(x_adv + step * tf.sign(s["grad"]), x, eps)
        x_new = _common.project_linf(x_adv + (z - x_adv) * a + grad2 * (1.0 - a), x, eps)
        s["x_adv_old"] = x_adv
        loss_now, grad, pred_ok = loss_and_grad(x_new)
        s["acc"] = s["acc"] & pred_ok
        s["x_best_adv"] = tf.where(_common.bcast(~pred_ok, x), x_new, s["x_best_adv"])
        s["loss_steps"] = tf.tensor_scatter_nd_update(s["loss_steps"], [[i]], loss_now[None])
        improved = loss_now > s["loss_best"]
        s["x_best"] = tf.where(_common.bcast(improved, x), x_new, s["x_best"])
        s["grad_best"] = tf.where(_common.bcast(improved, x), grad, s["grad_best"])
        s["loss_best"] = tf.where(improved, loss_now, s["loss_best"])
        counter3 = s["counter3"] + 1
        k = s["k"]
        check = tf.equal(counter3, k)

        # Share of the last k steps whose loss rose; row indices wrap as in the original, whose
        # first check compares against a not-yet-written (zero) row.
        back = tf.range(k)
        rows_now = tf.math.floormod(i - back, n_iter)
        rows_before = tf.math.floormod(i - back - 1, n_iter)
        rises = tf.reduce_sum(tf.cast(tf.gather(s["loss_steps"], rows_now)
                                      > tf.gather(s["loss_steps"], rows_before), tf.float32), 0)
        oscillating = rises <= tf.cast(k, tf.float32) * rho
        stalled = ~s["reduced_last_check"] & (s["loss_best_last_check"] >= s["loss_best"])
        halve = check & (oscillating | stalled)
        s["step"] = tf.where(halve, s["step"] / 2.0, s["step"])
        s["x_adv"] = tf.where(_common.bcast(halve, x), s["x_best"], x_new)
        s["grad"] = tf.where(_common.bcast(halve, x), s["grad_best"], grad)
        s["reduced_last_check"] = tf.where(check, oscillating | stalled, s["reduced_last_check"])
        s["loss_best_last_check"] = tf.where(check, s["loss_best"], s["loss_best_last_check"])
        s["k"] = tf.where(check, tf.maximum(k - size_decr, n_iter_min), k)
        s["counter3"] = tf.where(check, 0, counter3)
        return i + 1, s

    _, state = tf.while_loop(lambda i, _: i < n_iter, body, (tf.constant(0), state),
                             maximum_iterations=n_iter)
    return state["x_best"], state["acc"], state["loss_best"], state["x_best_adv"]


def random_start(x, eps, seed):
    """The original's start: a uniform direction scaled to L-inf norm eps, clipped to [0, 1]."""
    t = tf.random.stateless_uniform(tf.shape(x), seed, -1.0, 1.0, dtype=tf.float32)
    return tf.clip_by_value(x + eps * t / _common.bcast(_common.linf_norm(t) + 1e-12, x), 0.0, 1.0)


def _compiled_core(model, x, n_iter, loss, rho):
    def build(get_model):
        def fn(x, y, y_target, x_init, eps):
            return _apgd_core(get_model(), x, y, y_target, x_init, eps, n_iter, loss, rho)
        return fn, (tf.TensorSpec((None,), tf.int32), tf.TensorSpec((None,) + tuple(x.shape[1:])),
                    tf.TensorSpec((), tf.float32))
    return _common.compiled(model, ("apgd", n_iter, loss, rho), build, x)


def _core_for(model, x, eps, n_iter, loss, rho):
    core = _compiled_core(model, x, n_iter, loss, rho)
    eps_t = tf.constant(eps, tf.float32)
    return lambda x, y, y_target, seed: core(x, y, y_target, random_start(x, eps_t, seed), eps_t)


def apgd_single_run(model, x, y, x_init, eps=8 / 255, n_iter=100, loss="ce", y_target=None,
                    rho=0.75):
    """One APGD run from a given start (no restarts, no filtering; for checks and custom loops).

    ``loss``: "ce", "dlr" or "dlr-targeted" (then ``y_target`` is required). Returns tensors
    (best-loss point, still-robust flags, best loss, misclassified point or the start).
    """
    eps, n_iter, _, rho = _check(eps, n_iter, 1, rho)
    if loss not in LOSSES:
        raise ValueError(f"Unknown APGD loss {loss!r}; allowed: {LOSSES}.")
    if loss == "dlr-targeted" and y_target is None:
        raise ValueError("loss='dlr-targeted' needs y_target.")
    x, y = _common.as_inputs(x, y)
    y_target = y if y_target is None else tf.cast(tf.reshape(y_target, [-1]), tf.int32)
    x_init = _common.project_linf(tf.convert_to_tensor(x_init, tf.float32), x, eps)
    core = _compiled_core(model, x, n_iter, loss, rho)
    return core(x, y, y_target, x_init, tf.constant(eps, tf.float32))


def _check(eps, n_iter, n_restarts, rho):
    eps = _common.check_eps(eps)
    n_iter = _common.check_positive_int(n_iter, "n_iter")
    n_restarts = _common.check_positive_int(n_restarts, "n_restarts")
    if not 0 < float(rho) <= 1:
        raise ValueError(f"rho must be in (0, 1], got {rho!r}.")
    return eps, n_iter, n_restarts, float(rho)


def apgd(model, x, y, eps=8 / 255, n_iter=100, n_restarts=1, loss="ce", rho=0.75, seed=0):
    """Untargeted APGD (Croce & Hein 2020); returns adversarial images (a tf.Tensor).

    Restarts run only on the examples still robust; clean-misclassified ones come back as is.

    Args:
      model: a callable mapping [0, 1] images to logits.
      x: images in [0, 1], NHWC.
      y: integer labels, shape (N,).
      eps: the L-inf radius.
      n_iter: iterations per restart (AutoAttack's 100).
      n_restarts: random restarts (>= 1).
      loss: "ce" (APGD-CE) or "dlr" (the difference-of-logits-ratio loss).
      rho: the step-size halving check's threshold, in (0, 1] (AutoAttack's 0.75).
      seed: seeds the random starts.
    """
    eps, n_iter, n_restarts, rho = _check(eps, n_iter, n_restarts, rho)
    if loss not in ("ce", "dlr"):
        raise ValueError(f"Unknown APGD loss {loss!r}; allowed: ('ce', 'dlr').")
    x, y = _common.as_inputs(x, y)
    core = _core_for(model, x, eps, n_iter, loss, rho)
    adv = x.numpy().copy()
    robust = (_common.predict_labels(model, x) == y).numpy()
    for restart in range(n_restarts):
        idx = np.flatnonzero(robust)
        if idx.size == 0:
            break
        ys = tf.gather(y, idx)
        _, acc, _, x_best_adv = core(tf.gather(x, idx), ys, ys, _common.seed_pair(seed, restart))
        fooled = ~acc.numpy()
        robust[idx[fooled]] = False
        adv[idx[fooled]] = x_best_adv.numpy()[fooled]
    return tf.convert_to_tensor(adv)


def apgd_targeted(model, x, y, eps=8 / 255, n_iter=100, n_restarts=1, n_target_classes=9,
                  rho=0.75, seed=0):
    """APGD-T: targeted DLR towards the 2nd, 3rd, ... most likely clean classes, in turn, on the
    examples no earlier target has broken; returns adversarial images.

    Args:
      model, x, y, eps, n_iter, rho, seed: as ``apgd``.
      n_restarts: restarts per target class.
      n_target_classes: how many target classes to try (at most classes - 1; AutoAttack's 9).
    """
    eps, n_iter, n_restarts, rho = _check(eps, n_iter, n_restarts, rho)
    n_target_classes = _common.check_positive_int(n_target_classes, "n_target_classes")
    x, y = _common.as_inputs(x, y)
    if x.shape[0] == 0:
        return x
    n_classes = int(_common.logits_of(model, x[:1]).shape[-1])
    if n_classes < 4:
        raise ValueError(f"APGD-T's targeted DLR loss needs at least 4 classes; the model has "
                         f"{n_classes}.")
    if n_target_classes > n_classes - 1:
        msg = (f"APGD-T: {n_target_classes} target classes requested but only {n_classes - 1} "
               f"exist; using {n_classes - 1}.")
        absl_logging.warning(msg)
        n_target_classes = n_classes - 1
    core = _core_for(model, x, eps, n_iter, "dlr-targeted", rho)
    adv = x.numpy().copy()
    robust = (_common.predict_labels(model, x) == y).numpy()
    for idx, _, y_target, seed_pair in _common.targeted_runs(model, x, robust, n_target_classes,
                                                             n_restarts, seed):
        _, acc, _, x_best_adv = core(tf.gather(x, idx), tf.gather(y, idx), y_target, seed_pair)
        fooled = ~acc.numpy()
        robust[idx[fooled]] = False
        adv[idx[fooled]] = x_best_adv.numpy()[fooled]
    return tf.convert_to_tensor(adv)
