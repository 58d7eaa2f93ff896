"""Shared plumbing for the attacks: argument checks, compiled-function cache, projections, losses.

Every attack core is a ``tf.function`` built once per (model, settings, image shape) with a
``None`` batch dimension, so batches of any size (AutoAttack's shrinking robust subsets included)
reuse one trace instead of retracing.
"""
import functools
import inspect
import weakref

import numpy as np
import tensorflow as tf

from birds_tf.layers.masked import reuse_effective_kernels

# A model that blocks the input gradient (a masking defence) must yield zeros, not a crash.
ZERO_GRAD = tf.UnconnectedGradients.ZERO


def check_eps(eps, name="eps"):
    """A float >= 0; refuse anything else up front with the offending value in the message."""
    try:
        value = float(eps)
    except (TypeError, ValueError):
        value = float("nan")
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0 (e.g. 8/255), got {eps!r}.")
    return value


def check_positive_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def as_inputs(x, y):
    """float32 images and int32 class indices (one-hot labels are accepted and arg-maxed)."""
    x = tf.convert_to_tensor(x, tf.float32)
    y = tf.convert_to_tensor(y)
    if y.shape.rank == 2:
        y = tf.argmax(y, axis=-1)
    y = tf.cast(tf.reshape(y, [-1]), tf.int32)
    if x.shape[0] is not None and y.shape[0] is not None and x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} examples but y has {y.shape[0]} labels.")
    return x, y


_CACHE = {}


def _weak(model):
    """A weak reference, so the cache never keeps a model (and its graphs) alive."""
    if inspect.ismethod(model):
        return weakref.WeakMethod(model)
    return weakref.ref(model)


def compiled(model, key, build, example_x):
    """The ``tf.function`` of ``build(get_model)``, cached per model, settings and image shape.

    ``build`` returns ``(fn, extra_specs)``: ``fn(x, y, *extra)`` takes images, int32 labels and
    further tensors described by the TensorSpecs in ``extra_specs``, and reaches the model only
    through ``get_model()`` (a weak reference), so a dropped model frees its compiled attacks.
    """
    for stale in [k for k, (ref, _) in _CACHE.items() if ref() is None]:
        del _CACHE[stale]
    shape = tuple(example_x.shape[1:])
    full_key = (id(model), key, shape)
    entry = _CACHE.get(full_key)
    if entry is None or entry[0]() is not model:
        ref = _weak(model)
        fn, extra = build(ref)
        fn = _fixed_weights(fn, ref)
        signature = [tf.TensorSpec((None,) + shape, tf.float32), tf.TensorSpec((None,), tf.int32)]
        signature += list(extra)
        entry = (ref, tf.function(fn, input_signature=signature))
        _CACHE[full_key] = entry
    return entry[1]


def _fixed_weights(fn, get_model):
    """``fn`` with the model's masked kernels computed once per call (attacks never change the
    weights; see ``layers.masked.reuse_effective_kernels``)."""
    @functools.wraps(fn)
    def wrapped(*args):
        with reuse_effective_kernels(get_model()):
            return fn(*args)
    return wrapped


def predict_labels(model, x, batch_size=None):
    """Arg-max predictions, in eval mode, through a cached compiled forward pass."""
    x = tf.convert_to_tensor(x, tf.float32)

    def build(get_model):
        def fn(x, y):
            return tf.argmax(get_model()(x, training=False), axis=-1, output_type=tf.int32)
        return fn, ()
    fn = compiled(model, ("predict",), build, x)
    dummy = tf.zeros([0], tf.int32)
    if batch_size is None or x.shape[0] <= batch_size:
        return fn(x, dummy)
    return tf.concat([fn(x[i:i + batch_size], dummy)
                      for i in range(0, x.shape[0], batch_size)], axis=0)


def targeted_runs(model, x, robust, n_target_classes, n_restarts, seed):
    """The (target rank x restart) loop of APGD-T and FAB-T over the points still robust.

    Yields ``(idx, restart, y_target, seed)`` per run: the indices of the points ``robust`` still
    marks (the caller clears the ones it breaks, in place, before the next run), the restart
    number, the target class of each (the ``target_rank``-th most likely clean class, rank 2 =
    the runner-up, stable ties) and the run's seed pair. Stops as soon as none are left.
    """
    for target_rank in range(2, n_target_classes + 2):
        for restart in range(n_restarts):
            idx = np.flatnonzero(robust)
            if idx.size == 0:
                return
            order = np.argsort(logits_of(model, tf.gather(x, idx)).numpy(), axis=1,
                               kind="stable")
            y_target = tf.constant(order[:, -target_rank].astype(np.int32))
            yield idx, restart, y_target, seed_pair(seed, 1000 * target_rank + restart)


def logits_of(model, x):
    x = tf.convert_to_tensor(x, tf.float32)

    def build(get_model):
        def fn(x, y):
            return tf.cast(get_model()(x, training=False), tf.float32)
        return fn, ()
    return compiled(model, ("logits",), build, x)(x, tf.zeros([0], tf.int32))


def project_linf(x_adv, x, eps):
    """Clip to the L-inf ball around ``x``, then to [0, 1]: the intervals intersect (x is in the
    box), so the two clips equal one projection onto the intersection."""
    return tf.clip_by_value(tf.clip_by_value(x_adv, x - eps, x + eps), 0.0, 1.0)


def bcast(v, x):
    """Reshape a per-example vector so it broadcasts against images ``x``."""
    return tf.reshape(v, tf.concat([[-1], tf.ones([tf.rank(x) - 1], tf.int32)], axis=0))


def linf_norm(d):
    return tf.reduce_max(tf.abs(tf.reshape(d, [tf.shape(d)[0], -1])), axis=1)


def true_and_best_other(logits, y):
    """(z_y, max_{j != y} z_j) per example."""
    onehot = tf.one_hot(y, tf.shape(logits)[-1], dtype=logits.dtype)
    true = tf.reduce_sum(onehot * logits, axis=-1)
    other = tf.reduce_max(tf.where(onehot > 0, tf.constant(-np.inf, logits.dtype), logits), axis=-1)
    return true, other


# Multiplier for ``batch_seed``: a prime, so distinct batches of one seed never share a seed.
_BATCH_STRIDE = 1_000_003


def batch_seed(seed, batch_index):
    """The seed of batch ``batch_index`` of an attack run with ``seed``.

    Why: TF's stateless generator returns the first rows of a larger draw for a smaller one, so
    one seed for every batch gives batch 2 the random starts of batch 1's first rows. Batch 0
    keeps ``seed`` itself; the result is a pure function of (seed, batch), so evaluation stays
    deterministic and a resumed evaluation repeats an uninterrupted one.
    """
    return (int(seed) + int(batch_index) * _BATCH_STRIDE) % (2 ** 31 - 1)


def seed_pair(seed, salt):
    """A stateless-RNG seed; ``salt`` tells restarts / targets / batches apart."""
    return tf.constant([int(seed) % (2 ** 31 - 1), int(salt) % (2 ** 31 - 1)], tf.int32)
