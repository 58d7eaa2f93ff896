"""Reading and writing the masks of any model built from masked layers.

Every function takes a model (or a list of layers) so the same helpers serve the callbacks,
the static pruners, the FLOPs counter and the exporter.
"""

import numpy as np

from birds_tf.layers.masked import MASKED_LAYER_TYPES
from birds_tf.utils.checks import density as validate_density  # noqa: F401 (public name)
from birds_tf.utils.optimizer_slots import momentum_buffer


def masked_layers(model):
    """All masked layers of ``model``, in a stable order (depth-first, as Keras lists them)."""
    layers = []
    seen = set()
    for layer in walk_layers(model):
        if isinstance(layer, MASKED_LAYER_TYPES) and id(layer) not in seen:
            seen.add(id(layer))
            layers.append(layer)
    return layers


def require_masked_layers(model, owner):
    """``masked_layers`` of ``model`` (or of the ``net`` a trainer wraps); raises, naming
    ``owner``, when there are none."""
    layers = masked_layers(getattr(model, "net", model))
    if not layers:
        raise ValueError(f"{owner} found no masked layers; build the model from birds_tf.models "
                         "or convert it with birds_tf.sparsify(model).")
    return layers


def walk_layers(layer):
    """``layer`` and every layer nested in it, depth-first (sub-models included)."""
    yield layer
    for sub in getattr(layer, "_flatten_layers", lambda **_: [])(include_self=False,
                                                                  recursive=True):
        yield sub


def layer_density(layer):
    mask = np.asarray(layer.mask.numpy())
    return float(mask.sum() / mask.size)


def densities(model):
    """Per-layer density, keyed by the layer's name."""
    return {layer.name: layer_density(layer) for layer in masked_layers(model)}


def global_density(model):
    """Active weights over all maskable weights."""
    active = total = 0
    for layer in masked_layers(model):
        mask = np.asarray(layer.mask.numpy())
        active += mask.sum()
        total += mask.size
    if total == 0:
        raise ValueError("The model has no masked layers; build it from birds_tf.models or "
                         "convert it with birds_tf.sparsify(model).")
    return float(active / total)


def check_mask(layer, mask):
    """A mask must match the kernel's shape and hold only 0 and 1."""
    mask = np.asarray(mask)
    shape = tuple(layer.kernel.shape)
    if mask.shape != shape:
        raise ValueError(f"Mask for layer {layer.name!r} has shape {mask.shape}; the kernel has "
                         f"shape {shape}. Pass an array of exactly that shape.")
    bad = ~np.isin(mask, (0, 1))
    if bad.any():
        values = np.unique(mask[bad])[:5].tolist()
        raise ValueError(f"Mask for layer {layer.name!r} holds values {values}; only 0 and 1 are "
                         "allowed.")
    return mask.astype(layer.mask.dtype)


def set_mask(layer, mask, zero_kernel=True):
    """Validate and assign one layer's mask, then zero the stored kernel where it is pruned."""
    mask = check_mask(layer, mask)
    layer.mask.assign(mask)
    if zero_kernel:
        apply_mask(layer)


def set_masks(model, masks, zero_kernel=True):
    """Assign masks given as ``{layer_name: array}``; unknown names are an error."""
    by_name = {layer.name: layer for layer in masked_layers(model)}
    unknown = sorted(set(masks) - set(by_name))
    if unknown:
        raise ValueError(f"No masked layer named {unknown}; the model's masked layers are "
                         f"{sorted(by_name)}.")
    checked = {name: check_mask(by_name[name], mask) for name, mask in masks.items()}
    for name, mask in checked.items():
        set_mask(by_name[name], mask, zero_kernel=zero_kernel)


def get_masks(model):
    return {layer.name: np.asarray(layer.mask.numpy()) for layer in masked_layers(model)}


def apply_mask(layer):
    """Zero the stored kernel at pruned positions (the forward pass already ignores them)."""
    layer.kernel.assign(layer.kernel * layer.mask)


def apply_masks(model):
    for layer in masked_layers(model):
        apply_mask(layer)


def count_active(model):
    """Per-layer number of active weights."""
    return {layer.name: int(np.asarray(layer.mask.numpy()).sum())
            for layer in masked_layers(model)}


def assign_mask_and_reset(layer, mask, keep, optimizer=None):
    """Give ``layer`` a new mask; zero the kernel and its momentum wherever ``keep`` is 0.

    Pruning and regrowth share this: a pruned weight must stop moving (its momentum would push it
    on) and a grown one starts from zero with zero momentum.
    """
    keep = np.asarray(keep, dtype=np.float32)
    layer.mask.assign(np.asarray(mask, dtype=np.float32))
    layer.kernel.assign(np.asarray(layer.kernel.numpy()) * keep)
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    if optimizer is None or not getattr(optimizer, "built", False):
        return
    try:
        buf = momentum_buffer(optimizer, layer.kernel)
    except ValueError:
        return
    buf.assign(np.asarray(buf.numpy()) * keep)
