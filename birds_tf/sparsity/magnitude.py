"""Magnitude pruning for Robust Bird: the global ticket, the early-bird mask and mask distances.

Two rules of the authors' code (at 6e9a862: ``Robust-Bird/utils/early_bird.py`` and
``prune_unstructured`` in ``Robust-Bird/utils/function.py``) exist and both are offered:

* ``rule="l1_unstructured"`` (default) -- the ticket, ``torch.nn.utils.prune.global_unstructured``
  with ``L1Unstructured``: exactly ``round((1 - D) * N)`` weights with the smallest ``|w|`` are
  removed (Python's round, half to even, like torch's ``_compute_nparams_toprune``). torch leaves
  the order of tied magnitudes to ``topk``; here ties are broken by position (the earlier layer,
  then the earlier flat index, is pruned first), so the count is exact and deterministic.
* ``rule="early_bird"`` -- the detector's ``thre = sorted(|w|)[int(N * (1 - D))]``,
  ``mask = |w| > thre``; ties at the threshold are pruned, so the kept count can be smaller.

Magnitudes are of the effective weights ``kernel * mask``, so already-pruned weights go first
even if their stored value was never zeroed.
"""
import math

import numpy as np

from birds_tf.layers.masked import MaskedConv2D, MaskedDense
from birds_tf.sparsity import masks as masks_lib
from birds_tf.utils import checks

RULES = ("l1_unstructured", "early_bird")
LAYER_FILTERS = ("all", "conv", "dense")


def _select_layers(model, layers, layer_filter):
    if layer_filter not in LAYER_FILTERS:
        raise ValueError(f"Unknown layer_filter {layer_filter!r}; allowed: {list(LAYER_FILTERS)}.")
    all_layers = masks_lib.masked_layers(model)
    if layers is not None:
        by_name = {layer.name: layer for layer in all_layers}
        names = [getattr(item, "name", item) for item in layers]
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ValueError(f"No masked layer named {unknown}; the model's masked layers are "
                             f"{sorted(by_name)}.")
        chosen = [by_name[n] for n in names]
    else:
        chosen = all_layers
    if layer_filter == "conv":
        chosen = [layer for layer in chosen if isinstance(layer, MaskedConv2D)]
    elif layer_filter == "dense":
        chosen = [layer for layer in chosen if isinstance(layer, MaskedDense)]
    if not chosen:
        raise ValueError(f"No masked layers selected (layers={layers!r}, "
                         f"layer_filter={layer_filter!r}).")
    return chosen


def effective_weights(model, layers=None, layer_filter="all"):
    """``{name: kernel * mask}`` as NumPy arrays."""
    return {layer.name: np.asarray(layer.kernel.numpy()) * np.asarray(layer.mask.numpy())
            for layer in _select_layers(model, layers, layer_filter)}


def l1_pruned_count(density, n):
    """torch ``L1Unstructured``'s ``round(amount * n)`` with ``amount = 1 - density``."""
    return int(round((1.0 - float(density)) * int(n)))


def global_magnitude_mask_arrays(weights, density, rule="l1_unstructured"):
    """One threshold over all arrays of ``{name: weights}``; returns ``{name: 0/1 float32}``."""
    density = checks.density(density)
    if rule not in RULES:
        raise ValueError(f"Unknown rule {rule!r}; allowed: {list(RULES)}.")
    names = list(weights)
    if not names:
        raise ValueError("No weights given.")
    flat = np.concatenate([np.abs(np.asarray(weights[n], np.float64)).ravel() for n in names])
    total = flat.size
    if rule == "l1_unstructured":
        keep = np.ones(total, dtype=bool)
        keep[np.argsort(flat, kind="stable")[:l1_pruned_count(density, total)]] = False
    else:
        index = min(int(total * (1.0 - density)), total - 1)
        keep = flat > np.sort(flat)[index]
    out, start = {}, 0
    for n in names:
        shape = np.shape(weights[n])
        size = math.prod(shape)
        out[n] = keep[start:start + size].reshape(shape).astype(np.float32)
        start += size
    return out


def global_magnitude_masks(model, density, layers=None, layer_filter="all",
                           rule="l1_unstructured"):
    """Robust Bird's global magnitude masks over the selected layers.

    The ticket uses ``layer_filter="all"`` (conv + fc); the early-bird detector uses
    ``layer_filter="conv", rule="early_bird"``. Returns masks for the selected layers only;
    apply them with ``masks.set_masks``.
    """
    return global_magnitude_mask_arrays(effective_weights(model, layers, layer_filter), density,
                                        rule)


def layerwise_magnitude_masks(model, density, layers=None, layer_filter="all",
                              rule="l1_unstructured"):
    """The same rule applied to each layer separately (every layer at ``density``)."""
    weights = effective_weights(model, layers, layer_filter)
    out = {}
    for name, w in weights.items():
        out.update(global_magnitude_mask_arrays({name: w}, density, rule))
    return out


def hamming_distance(mask_a, mask_b):
    """Fraction of positions where two masks differ (the early-bird distance).

    Takes two ``{name: array}`` dicts with the same names and shapes, or two arrays of the same
    size; normalised by the total number of weights, as ``EarlyBird.cal_dist``.
    """
    if isinstance(mask_a, dict) != isinstance(mask_b, dict):
        raise ValueError("Compare two dicts of masks or two arrays, not one of each.")
    if isinstance(mask_a, dict):
        if set(mask_a) != set(mask_b):
            only_one = sorted(set(mask_a) ^ set(mask_b))
            raise ValueError(f"The masks cover different layers: {only_one} are in only one of "
                             "them.")
        names = list(mask_a)
        for n in names:
            if np.shape(mask_a[n]) != np.shape(mask_b[n]):
                raise ValueError(f"Mask {n!r} has shape {np.shape(mask_a[n])} in one and "
                                 f"{np.shape(mask_b[n])} in the other.")
        a = np.concatenate([np.asarray(mask_a[n]).ravel() for n in names])
        b = np.concatenate([np.asarray(mask_b[n]).ravel() for n in names])
    else:
        a, b = np.asarray(mask_a).ravel(), np.asarray(mask_b).ravel()
        if a.size != b.size:
            raise ValueError(f"Masks have {a.size} and {b.size} entries; they must match.")
    if a.size == 0:
        raise ValueError("Empty masks have no Hamming distance.")
    return float(np.count_nonzero((a != 0) != (b != 0)) / a.size)
