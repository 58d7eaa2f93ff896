"""Layer-wise density budgets and the random masks drawn from them (Flying Bird's sparse init).

The budget functions (:func:`igq`, :func:`erk`, :func:`er`, :func:`uniform`) are pure functions of
the kernel shapes so they can be checked without building a model; :func:`layer_densities` is the
model-level entry point and adds the paper's SNIP-derived budget, which needs data.

Densities are kept fractions (1 = dense). Everything keyed by layer name uses the names of
``masks.masked_layers(model)``.
"""
import math

import numpy as np

from birds_tf.sparsity import masks as masks_lib
from birds_tf.utils import checks
from birds_tf.sparsity import scorers
from birds_tf.utils.seeds import layer_seed

DISTRIBUTIONS = ("igq", "erk", "er", "uniform", "snip")

# Bisection bounds of the reference IGQ (`bs_force_igq(..., f_low=0, f_high=1e20)`).
_IGQ_F_HIGH = 1e20
_IGQ_MAX_STEPS = 10_000


def _named_shapes(shapes):
    """Accept ``{name: shape}`` or a list of shapes; remember which so the output matches."""
    if isinstance(shapes, dict):
        items = [(name, tuple(int(d) for d in shape)) for name, shape in shapes.items()]
        return items, True
    return [(i, tuple(int(d) for d in shape)) for i, shape in enumerate(shapes)], False


def _pack(items, values, as_dict):
    if as_dict:
        return {name: value for (name, _), value in zip(items, values)}
    return list(values)


def _check_shapes(items):
    if not items:
        raise ValueError("No layer shapes given; the model has no masked layers.")
    for name, shape in items:
        if not shape or math.prod(shape) <= 0:
            raise ValueError(f"Layer {name!r} has shape {shape}; every masked kernel needs at "
                             "least one weight.")


def igq(shapes, density):
    """Ideal Gas Quotas (Vysogorets & Kempe): ``d_l = 1 / (F * n_l + 1)``.

    F comes from the reference's recursive bisection on [0, 1e20] (written as a loop here): both
    end points are tested first, then the midpoint replaces whichever end keeps the target
    bracketed, until the overall sparsity is within ``1 / sum(n_l)`` of ``1 - density``. The
    per-layer arithmetic mirrors the reference (``area = 1/n``, ``length = n / (F/area + 1)``) so
    that ``1 - d_l`` is bit-for-bit the sparsity the reference would hand to its mask sampler.
    """
    density = checks.density(density)
    items, as_dict = _named_shapes(shapes)
    _check_shapes(items)
    counts = [math.prod(shape) for _, shape in items]
    areas = [1.0 / n for n in counts]
    total = sum(counts)
    target = 1.0 - density
    tolerance = 1.0 / total

    def lengths_at(force):
        return [n / (force / area + 1) for n, area in zip(counts, areas)]

    def sparsity_at(lengths):
        return 1 - sum(lengths) / total

    f_low, f_high = 0.0, _IGQ_F_HIGH
    for _ in range(_IGQ_MAX_STEPS):
        lengths = lengths_at(f_low)
        if abs(sparsity_at(lengths) - target) < tolerance:
            break
        lengths = lengths_at(f_high)
        if abs(sparsity_at(lengths) - target) < tolerance:
            break
        force = float(f_low + f_high) / 2
        overall = sparsity_at(lengths_at(force))
        # The reference moves neither end on an exact hit and would recurse forever; taking it
        # as the new low end lets the next end-point test accept it.
        if overall <= target:
            f_low = force
        else:
            f_high = force
    else:  # pragma: no cover - the bisection halves a finite interval; this is a safety net
        raise RuntimeError(f"IGQ bisection did not reach density {density} within "
                           f"{_IGQ_MAX_STEPS} steps.")
    return _pack(items, [length / n for length, n in zip(lengths, counts)], as_dict)


def erk(shapes, density, power=1.0):
    """Erdos-Renyi-Kernel as in RigL / the reference ``fixed_ERK``: ``d_l = eps * raw_l``.

    ``raw_l = (sum(shape) / prod(shape)) ** power``. The number of kept weights must equal
    ``density * N``: layers in the dense set keep all ``n_l`` weights, so the others share
    ``rhs = sum_{sparse} D n_l - sum_{dense} (1 - D) n_l`` and
    ``eps = rhs / sum_{sparse} raw_l n_l``
    (then ``sum_dense n_l + eps * sum_sparse raw_l n_l = D * N``). Every layer whose density
    would exceed 1 (all layers tied at the largest ``raw``) joins the dense set and eps is
    re-solved, so no density exceeds 1 and the global density is exactly D.
    """
    density = checks.density(density)
    items, as_dict = _named_shapes(shapes)
    _check_shapes(items)
    if density == 1.0:
        return _pack(items, [1.0] * len(items), as_dict)
    counts = [math.prod(shape) for _, shape in items]
    raw = [(sum(shape) / math.prod(shape)) ** power for _, shape in items]
    dense = set()
    while True:
        sparse_idx = [i for i in range(len(items)) if i not in dense]
        if not sparse_idx:  # pragma: no cover - only reachable at density 1, handled above
            break
        rhs = sum(density * counts[i] for i in sparse_idx)
        rhs -= sum((1 - density) * counts[i] for i in dense)
        divisor = sum(raw[i] * counts[i] for i in sparse_idx)
        eps = rhs / divisor
        max_raw = max(raw[i] for i in sparse_idx)
        if max_raw * eps > 1:
            dense.update(i for i in sparse_idx if raw[i] == max_raw)
        else:
            break
    values = [1.0 if i in dense else eps * raw[i] for i in range(len(items))]
    return _pack(items, values, as_dict)


def er(shapes, density, cap=True):
    """SET's Erdos-Renyi: ``d_l = eps * sum(shape) / prod(shape)``, eps solved exactly.

    The reference searches eps multiplicatively until ``sum eps * sum(shape)`` is within 5
    weights of ``D * N`` and never caps, so a layer whose ``eps * raw_l`` exceeds 1 is simply
    dense and the network ends up below the requested density. With ``cap=True`` (default) eps
    is re-solved after moving such layers to a dense set, which makes the global density exactly
    D -- and makes ER coincide with ERK at power 1, since both use the same ``raw_l``.
    ``cap=False`` reproduces the reference: eps solved exactly without the dense set, densities
    clipped to 1 afterwards (what a Bernoulli draw with probability > 1 yields).
    """
    if cap:
        return erk(shapes, density, power=1.0)
    density = checks.density(density)
    items, as_dict = _named_shapes(shapes)
    _check_shapes(items)
    total = sum(math.prod(shape) for _, shape in items)
    eps = density * total / sum(sum(shape) for _, shape in items)
    values = [min(1.0, eps * sum(shape) / math.prod(shape)) for _, shape in items]
    return _pack(items, values, as_dict)


def uniform(shapes, density):
    """Every layer, stem and classifier included, at the target density (as the reference)."""
    density = checks.density(density)
    items, as_dict = _named_shapes(shapes)
    _check_shapes(items)
    return _pack(items, [density] * len(items), as_dict)


def kernel_shapes(model):
    """``{layer name: kernel shape}`` for every masked layer."""
    return {layer.name: tuple(int(d) for d in layer.kernel.shape)
            for layer in masks_lib.masked_layers(model)}


def snip_densities(model, density, data):
    """Layer densities implied by keeping the global top-``density`` SNIP scores.

    The paper's best FB+ initialisation (Section 4.3, Table 4) is "using SNIP to produce initial
    layer-wise sparsity", then random pruning; the reference code never implemented it. The kept count is the reference
    prune-loop's ``N - int((1 - D) * N)``; ties are broken by position (earlier layer, then
    earlier flat index, kept first) so the count is exact and the result deterministic.
    """
    density = checks.density(density)
    scores = scorers.snip_scores(model, data)
    names = list(scores)
    flat = np.concatenate([np.asarray(scores[n], np.float64).ravel() for n in names])
    total = flat.size
    keep = total - int((1.0 - density) * total)
    order = np.argsort(-flat, kind="stable")
    kept = np.zeros(total, dtype=bool)
    kept[order[:keep]] = True
    out, start = {}, 0
    for name in names:
        n = int(np.asarray(scores[name]).size)
        out[name] = float(kept[start:start + n].sum()) / n
        start += n
    return out


def layer_densities(model, density, method, data=None):
    """``{masked layer name: density}`` for one of :data:`DISTRIBUTIONS`."""
    if method not in DISTRIBUTIONS:
        raise ValueError(f"Unknown sparse-init method {method!r}; allowed: {list(DISTRIBUTIONS)}.")
    density = checks.density(density)
    if method == "snip":
        if data is None:
            raise ValueError("method='snip' needs data=(x, y) (or a list of such batches) to "
                             "compute SNIP scores.")
        return snip_densities(model, density, data)
    shapes = kernel_shapes(model)
    if not shapes:
        raise ValueError("The model has no masked layers; build it from birds_tf.models.")
    return {"igq": igq, "erk": erk, "er": er, "uniform": uniform}[method](shapes, density)


def pruned_count(density, n):
    """The reference's number of zeros for a layer, ``int((1 - d) * n)``.

    One deliberate difference: when ``(1 - d) * n`` lands within 1e-9 relative of an integer it
    is rounded to it, so a density computed as ``k / n`` gives exactly ``n - k`` zeros instead of
    losing one to floating-point representation (``int(4.999999999)``).
    """
    raw = (1.0 - float(density)) * int(n)
    nearest = round(raw)
    if abs(raw - nearest) <= 1e-9 * max(1, int(n)):
        return int(nearest)
    return int(raw)


def random_mask_arrays(shapes, densities, seed):
    """Pure version of :func:`random_masks` on ``{name: shape}``.

    Each layer gets exactly ``pruned_count(d, n)`` zeros at positions drawn uniformly without
    replacement (the reference's ``np.random.choice(..., replace=False)``) from a generator
    seeded by ``(seed, crc32(name))``, so adding or reordering layers leaves the others' masks
    unchanged.
    """
    seed = checks.seed(seed)
    unknown = sorted(set(densities) - set(shapes), key=str)
    if unknown:
        raise ValueError(f"Densities given for unknown layers {unknown}; known layers are "
                         f"{sorted(shapes, key=str)}.")
    out = {}
    for name, d in densities.items():
        d = float(d)
        if not 0.0 <= d <= 1.0 or math.isnan(d):
            raise ValueError(f"Density of layer {name!r} must be in [0, 1], got {d!r}.")
        shape = tuple(int(s) for s in shapes[name])
        n = math.prod(shape)
        zeros = pruned_count(d, n)
        rng = np.random.default_rng(layer_seed(seed, name))
        mask = np.ones(n, dtype=np.float32)
        mask[rng.choice(n, size=zeros, replace=False)] = 0.0
        out[name] = mask.reshape(shape)
    return out


def random_masks(model, densities, seed):
    """``{name: 0/1 array}`` with exactly ``pruned_count(d_l, n_l)`` zeros per given layer."""
    return random_mask_arrays(kernel_shapes(model), densities, seed)


def init_sparse(model, density, method, seed, data=None):
    """Flying Bird's sparse init: layer budget, then a random mask per layer, applied in place.

    Pruned kernel entries are zeroed (``masks.set_masks``), as the reference's ``apply_mask``
    after ``Masking.init``; surviving weights keep their initial values. Returns the masks.

    Args:
      model: a model with masked layers (``birds_tf.models`` or ``birds_tf.sparsify``).
      density: the global fraction of kept weights over the masked layers, in (0, 1].
      method: how the budget is split over layers: "igq" (Ideal Gas Quotas, the paper's),
        "erk" (Erdos-Renyi-Kernel), "er", "uniform" or "snip" (``DISTRIBUTIONS``).
      seed: seeds the random masks (an integer).
      data: ``(x, y)`` or a list of such batches; needed by "snip" only.

    Returns:
      ``{layer name: mask}`` as applied.
    """
    seed = checks.seed(seed)
    budget = layer_densities(model, density, method, data=data)
    new_masks = random_masks(model, budget, seed)
    masks_lib.set_masks(model, new_masks)
    return new_masks
