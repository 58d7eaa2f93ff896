"""Pruning-at-initialization scores (SNIP, GraSP, SynFlow, magnitude, random) and the prune loop.

Semantics follow Synaptic-Flow's ``Pruners/pruners.py`` and ``prune_loop`` (the reference's
``sparselearning/pruning_utils.py`` is a verbatim port; docs/authors-code.md, "Layer-wise
budgets and pruning at init"): the model runs in inference mode, SNIP/GraSP use the mean
cross-entropy of the model's logits, and masking is global with ``mask = score > kth-smallest
score``.

Every score is of the *effective* weight ``kernel * mask``. In Keras the layer's kernel gradient
is already masked (``d(kernel*mask)/dkernel = mask``), which is exactly PyTorch's ``p.grad`` of a
masked layer, so GraSP and SynFlow take gradients with respect to the kernels. SNIP's score is
the gradient with respect to the mask, ``dL/dm = g_eff * kernel`` (``g_eff`` dense), taken
directly by watching the mask variable; it is then multiplied by the mask so that a pruned
position scores 0 even if its stored kernel value was never zeroed. With zeroed kernels (what
``masks.set_masks`` does) every score equals the reference's.

Scores are ``{masked layer name: np.ndarray shaped like the kernel}``.
"""
import numpy as np
import tensorflow as tf

from birds_tf.sparsity import masks as masks_lib
from birds_tf.utils import checks
from birds_tf.utils.seeds import layer_seed

SCORERS = ("snip", "grasp", "synflow", "magnitude", "random")
ROUND_SCHEDULES = ("exponential", "linear")
GRASP_EPS = 1e-10


# ---------------------------------------------------------------------------------------------
# helpers

def _layers(model):
    layers = masks_lib.masked_layers(model)
    if not layers:
        raise ValueError("The model has no masked layers; build it from birds_tf.models.")
    return layers


def _as_batches(data, who):
    """Accept ``(x, y)``, a list of ``(x, y)`` batches or a ``tf.data.Dataset`` of them.

    Extra items after ``y`` (Keras' ``(x, y, sample_weight)``) are ignored: every scorer uses the
    plain mean loss, as the reference.
    """
    if data is None:
        raise ValueError(f"{who} needs data: an (x, y) batch or a list of (x, y) batches.")
    if isinstance(data, (tuple, list)) and len(data) in (2, 3) and \
            not isinstance(data[0], (tuple, list)):
        batches = [tuple(data)]
    else:
        batches = [tuple(b) for b in data]
    if not batches:
        raise ValueError(f"{who} got no batches.")
    for b in batches:
        if len(b) < 2:
            raise ValueError(f"{who}: every batch must be (x, y), got {len(b)} item(s).")
    return [b[:2] for b in batches]


def _loss(y, logits):
    """Mean cross-entropy of logits; integer labels or one-hot/probability targets."""
    y = tf.convert_to_tensor(y)
    if y.dtype.is_integer or y.shape.rank == logits.shape.rank - 1:
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.cast(y, tf.int32), logits=logits))
    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(
        labels=tf.cast(y, logits.dtype), logits=logits))


def _np(t):
    return np.asarray(t.numpy() if hasattr(t, "numpy") else t, dtype=np.float64)


def _mask(layer):
    return _np(layer.mask)


def _effective(layer):
    return _np(layer.kernel) * _mask(layer)


# ---------------------------------------------------------------------------------------------
# scorers

def snip_scores(model, batches):
    """SNIP: ``|sum_b dL_b/dm| * m``, normalised to sum 1 over all layers.

    Gradients are summed over all batches before the absolute value, as Synaptic-Flow's
    ``SNIP.score`` accumulates ``m.grad`` over its loader.
    """
    layers = _layers(model)
    batches = _as_batches(batches, "snip_scores")
    mask_vars = [layer.mask.value for layer in layers]
    total = [np.zeros(tuple(layer.kernel.shape)) for layer in layers]
    for x, y in batches:
        with tf.GradientTape() as tape:
            tape.watch(mask_vars)
            loss = _loss(y, model(x, training=False))
        for acc, g in zip(total, tape.gradient(loss, mask_vars)):
            acc += _np(g)
    scores = [np.abs(acc) * _mask(layer) for acc, layer in zip(total, layers)]
    norm = sum(s.sum() for s in scores)
    if norm > 0:
        scores = [s / norm for s in scores]
    return {layer.name: s for layer, s in zip(layers, scores)}


def grasp_scores(model, batches, temperature=200.0):
    """GraSP: ``(H g) * W`` (signed), normalised by ``|sum| + 1e-10``; lowest scores go first.

    ``g = sum_b grad L_b`` with logits divided by ``temperature`` and no graph; then
    ``H g = sum_b grad(grad L_b . g)`` by double backprop, both with respect to the (masked)
    kernels only, as in Synaptic-Flow.
    """
    layers = _layers(model)
    batches = _as_batches(batches, "grasp_scores")
    temperature = float(temperature)
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}.")
    kernels = [layer.kernel.value for layer in layers]

    stopped = [tf.zeros_like(k) for k in kernels]
    for x, y in batches:
        with tf.GradientTape() as tape:
            loss = _loss(y, model(x, training=False) / temperature)
        stopped = [s + g for s, g in zip(stopped, tape.gradient(loss, kernels))]

    hg = [np.zeros(tuple(k.shape)) for k in kernels]
    for x, y in batches:
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = _loss(y, model(x, training=False) / temperature)
            grads = inner.gradient(loss, kernels)
            z = tf.add_n([tf.reduce_sum(g * s) for g, s in zip(grads, stopped)])
        for acc, g in zip(hg, outer.gradient(z, kernels)):
            if g is not None:  # a linear network has a zero Hessian: no path back
                acc += _np(g)
    scores = [h * _effective(layer) for h, layer in zip(hg, layers)]
    norm = abs(sum(s.sum() for s in scores)) + GRASP_EPS
    return {layer.name: s / norm for layer, s in zip(layers, scores)}


def _float_variables(model):
    """Every floating-point variable except the masks (0/1 already; abs would not change them)."""
    mask_ids = {id(layer.mask) for layer in masks_lib.masked_layers(model)}
    out, seen = [], set()
    for v in model.variables:
        if id(v) in mask_ids or id(v) in seen:
            continue
        seen.add(id(v))
        if tf.as_dtype(v.dtype).is_floating:
            out.append(v)
    return out


def synflow_scores(model, input_shape=None):
    """SynFlow: ``|dR/dW * W|`` with ``R = sum(model(1))`` on the network with all params ``|.|``.

    Synaptic-Flow takes ``abs_()`` of every ``state_dict`` tensor, BatchNorm running statistics
    included, and restores the signs afterwards. Here every floating-point variable of the model
    (kernels, biases, BN gamma/beta/moving mean/moving variance) is replaced by its absolute
    value, the model runs once in inference mode (so BN uses those absolute moving statistics and
    nothing is updated) on an all-ones input (the reference's ``1 x C x H x W``), and the original values are assigned back in
    a ``finally`` block. Masks stay as they are. No normalisation, as in the reference.
    """
    layers = _layers(model)
    if input_shape is None:
        input_shape = tuple(model.inputs[0].shape[1:])
    input_shape = tuple(input_shape)
    if any(d is None for d in input_shape):
        raise ValueError(f"synflow_scores needs a fully known input shape, got {input_shape}; "
                         "pass input_shape=(H, W, C).")
    variables = _float_variables(model)
    saved = [np.array(v.numpy()) for v in variables]
    kernels = [layer.kernel.value for layer in layers]
    try:
        for v, value in zip(variables, saved):
            v.assign(np.abs(value))
        # Two identical rows, R from the first only: the same gradient as a batch of one (BN
        # runs on moving statistics, so rows do not interact), but it avoids a oneDNN heap
        # corruption in TF 2.21's CPU conv backprop at batch 1 (1x1 stride-2 conv, <= 8
        # channels, 32x32: "free(): invalid next size").
        ones = tf.ones((2,) + input_shape, dtype=model.inputs[0].dtype)
        with tf.GradientTape() as tape:
            r = tf.reduce_sum(tf.cast(model(ones, training=False)[:1], tf.float64))
        grads = tape.gradient(r, kernels)
        scores = {layer.name: np.abs(_np(g) * _effective(layer))
                  for layer, g in zip(layers, grads)}
    finally:
        for v, value in zip(variables, saved):
            v.assign(value)
    return scores


def magnitude_scores(model):
    """``|kernel * mask|``."""
    return {layer.name: np.abs(_effective(layer)) for layer in _layers(model)}


def random_scores(model, seed=0):
    """Standard-normal scores (Synaptic-Flow's ``Rand``), one crc32-seeded stream per layer."""
    seed = checks.seed(seed)
    return {layer.name: np.random.default_rng(layer_seed(seed, layer.name))
            .standard_normal(tuple(layer.kernel.shape))
            for layer in _layers(model)}


def compute_scores(model, scorer, batches=None, temperature=200.0, seed=0):
    """Dispatch by name; validates the name and that data-driven scorers got data."""
    if scorer not in SCORERS:
        raise ValueError(f"Unknown scorer {scorer!r}; allowed: {list(SCORERS)}.")
    if scorer in ("snip", "grasp") and batches is None:
        raise ValueError(f"scorer {scorer!r} needs batches=[(x, y), ...].")
    if scorer == "snip":
        return snip_scores(model, batches)
    if scorer == "grasp":
        return grasp_scores(model, batches, temperature)
    if scorer == "synflow":
        return synflow_scores(model)
    if scorer == "magnitude":
        return magnitude_scores(model)
    return random_scores(model, seed)


# ---------------------------------------------------------------------------------------------
# prune loop

def round_density(density, r, rounds, schedule="exponential"):
    """Kept fraction after round ``r`` (0-based) of ``rounds``: ``D**((r+1)/R)`` or linear."""
    if schedule == "exponential":
        return density ** ((r + 1) / rounds)
    return 1.0 - (1.0 - density) * ((r + 1) / rounds)


def global_threshold_masks(scores, density, current=None):
    """Synaptic-Flow's ``_global_mask``: prune ``k = int((1 - D) N)``, keep ``score > kth``.

    Ties at the threshold are all pruned, as in the reference. Positions already pruned in
    ``current`` get score ``-inf`` so a later round never revives them -- the reference gets the
    same for SNIP/SynFlow/magnitude through zeroed weights, but with signed (GraSP) or random
    scores it could bring pruned weights back.
    """
    names = list(scores)
    flat = [np.asarray(scores[n], np.float64).ravel().copy() for n in names]
    if current is not None:
        for f, n in zip(flat, names):
            f[np.asarray(current[n]).ravel() == 0] = -np.inf
    allv = np.concatenate(flat)
    k = int((1.0 - density) * allv.size)
    if k < 1:
        keep = [np.ones_like(f, dtype=bool) if current is None
                else np.asarray(current[n]).ravel() != 0 for f, n in zip(flat, names)]
    else:
        threshold = np.partition(allv, k - 1)[k - 1]
        keep = [f > threshold for f in flat]
    return {n: kp.reshape(np.shape(scores[n])).astype(np.float32) for n, kp in zip(names, keep)}


def prune_at_init(model, density, scorer, batches=None, rounds=None, schedule="exponential",
                  temperature=200.0, seed=0):
    """Iterative global pruning at initialisation (Synaptic-Flow's ``prune_loop``).

    Round ``r`` scores the current masked network and keeps ``round_density(D, r, R)`` of all
    weights. ``rounds=None`` means 100 for SynFlow (the SynFlow paper's setting) and 1 otherwise.
    Masks are applied (pruned kernel entries zeroed) after every round; returns the final masks.
    """
    if scorer not in SCORERS:
        raise ValueError(f"Unknown scorer {scorer!r}; allowed: {list(SCORERS)}.")
    density = checks.density(density)
    if rounds is None:
        rounds = 100 if scorer == "synflow" else 1
    if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 1:
        raise ValueError(f"rounds must be an integer >= 1, got {rounds!r}.")
    if schedule not in ROUND_SCHEDULES:
        raise ValueError(f"Unknown schedule {schedule!r}; allowed: {list(ROUND_SCHEDULES)}.")
    seed = checks.seed(seed)
    if scorer in ("snip", "grasp"):
        batches = _as_batches(batches, f"prune_at_init(scorer={scorer!r})")
    _layers(model)
    for r in range(int(rounds)):
        scores = compute_scores(model, scorer, batches, temperature, seed + r)
        current = masks_lib.get_masks(model)
        new = global_threshold_masks(scores, round_density(density, r, rounds, schedule),
                                     current)
        masks_lib.set_masks(model, new)
    return masks_lib.get_masks(model)
