"""Physical shrink: dead channels removed from the model's structure, not just masked.

A channel of a removable group (``birds_tf.sparsity.channel.removable_groups``: a conv whose output
reaches one consumer conv through BN/ReLU/padding/pooling only) is *dead* when the consumer's
effective input slice for it is all zero: nothing it computes reaches the logits. Removing it
drops the producer's filter (and bias), the per-channel entries of the chain in between
(BatchNorm's gamma, beta, moving mean and variance) and the consumer's input slice, so the
narrower model computes the same function exactly (up to float summation order). Residual
adds are never touched: their inputs are not removable.
"""
import keras
import numpy as np

from birds_tf.export.fold import fold_masks
from birds_tf.layers.masked import MASKED_LAYER_TYPES
from birds_tf.sparsity import masks as masks_lib
from birds_tf.sparsity.channel import removable_groups


def _effective(layer):
    if isinstance(layer, MASKED_LAYER_TYPES):
        return np.asarray(layer.effective_kernel())
    return np.asarray(layer.kernel.numpy())


def dead_channels(net):
    """``{producer: [channel, ...]}``: channels whose consumer input slice is all zero."""
    out = {}
    for producer, _, consumer in removable_groups(net):
        kernel = _effective(consumer)
        dead = np.flatnonzero(~np.any(kernel != 0, axis=(0, 1, 3)))
        if dead.size:
            out[producer.name] = [int(c) for c in dead]
    return out


def channel_counts(net):
    """``{producer: output channels}`` for every removable group's producer."""
    return {p.name: int(p.filters) for p, _, _ in removable_groups(net)}


def slicing_plan(net, remove):
    """``(keep, out_slice, in_slice)``: kept channels per producer, and which weights lose
    entries on their last axis (producer, chain) or on the input axis (consumer kernel)."""
    groups = {p.name: (p, chain, c) for p, chain, c in removable_groups(net)}
    unknown = sorted(set(remove) - set(groups))
    if unknown:
        raise ValueError(f"Cannot remove channels of {unknown}: not the head of a removable "
                         f"group; removable: {sorted(groups)}.")
    keep, out_slice, in_slice = {}, {}, {}
    for name, idx in remove.items():
        producer, chain, consumer = groups[name]
        idx = set(int(c) for c in idx)
        if any(not 0 <= c < producer.filters for c in idx):
            raise ValueError(f"Channel indices {sorted(idx)} out of range for {name!r} "
                             f"({producer.filters} channels).")
        kept = np.array([c for c in range(producer.filters) if c not in idx])
        if kept.size == 0:
            raise ValueError(f"Removing every channel of {name!r} would cut the network.")
        keep[name] = kept
        out_slice[name] = kept
        for layer in chain:
            out_slice[layer.name] = kept
        in_slice[consumer.name] = kept
    return keep, out_slice, in_slice


def slice_value(plan, layer_name, value):
    """``value`` (a weight of ``layer_name``, or a same-shaped optimizer slot) with the planned
    entries removed."""
    _, out_slice, in_slice = plan
    v = np.asarray(value)
    if layer_name in out_slice:
        v = v[..., out_slice[layer_name]]
    if layer_name in in_slice and v.ndim == 4:
        v = v[:, :, in_slice[layer_name], :]
    return v


def narrow(net, remove):
    """A copy of ``net`` without the channels ``remove`` names (``{producer: [channel, ...]}``).

    Masked layers stay masked (the copy can keep training), every weight (masks, BN statistics
    included) is copied with the removed entries sliced out.

    Args:
      net: a functional Keras model.
      remove: channels per producer; every producer must head a removable group.
    """
    plan = slicing_plan(net, remove)
    keep = plan[0]

    def clone(layer):
        config = layer.get_config()
        if layer.name in keep:
            config["filters"] = int(keep[layer.name].size)
        return layer.__class__.from_config(config)

    new = keras.models.clone_model(net, clone_function=clone)
    for layer in net.layers:
        if not layer.weights:
            continue
        twin = new.get_layer(layer.name)
        for w, old in zip(twin.weights, layer.weights):
            w.assign(slice_value(plan, layer.name, old.numpy()))
    return new


def paired_variables(old_net, new_net):
    """``[(layer name, old variable, new variable)]`` for every weight of the two nets (same
    layers, one narrower), to carry optimizer slots across a shrink."""
    out = []
    for layer in old_net.layers:
        if not layer.weights:
            continue
        twin = new_net.get_layer(layer.name)
        out += [(layer.name, a, b) for a, b in zip(layer.weights, twin.weights)]
    return out


def shrink(net, plain=True):
    """``net`` without its dead channels; a plain Keras model (masks folded) unless ``plain``
    is False.

    Raises:
      ValueError: ``net`` has no masked layer (a dense run) or no dead channel to remove.
    """
    if not masks_lib.masked_layers(net):
        raise ValueError("--shrink needs a sparse model (masked layers); this one is dense. "
                         "Export it without --shrink.")
    dead = dead_channels(net)
    if not dead:
        raise ValueError("--shrink found no removable channel: no conv output channel is dead "
                         f"(removable groups: {sorted(channel_counts(net)) or 'none'}). Train "
                         "with method 'fb_plus_channel' to remove channels, or export without "
                         "--shrink.")
    narrow_net = narrow(net, dead)
    return fold_masks(narrow_net) if plain else narrow_net


def channels_report(before, after):
    """``{producer: {"before": n, "after": m}}`` from two ``channel_counts``."""
    return {name: {"before": n, "after": after.get(name, n)} for name, n in before.items()}


def check_sparse_run(results):
    """Refuse ``--shrink`` for a run whose ``results.json`` says it trained a dense model.

    Raises:
      ValueError: its target sparsity is 0.
    """
    if not results.get("target_sparsity", 1.0):
        raise ValueError(f"--shrink needs a sparse run; this workdir's method "
                         f"{results.get('method')!r} trained a dense model (target sparsity 0). "
                         "Export it without --shrink.")


def shrink_for_export(net, results=None):
    """``(narrow masked net, report)`` for ``export_workdir(shrink=True)``.

    Raises:
      ValueError: the run was not sparse (its ``results.json`` target sparsity is 0) or the
        model has no dead channel.
    """
    results = results or {}
    check_sparse_run(results)
    before = channel_counts(net)
    trained = results.get("channels_per_layer")
    if trained and not dead_channels(net):  # already shrunk during training: nothing is dead
        return net, {"channels": {k: dict(v) for k, v in trained.items()},
                     "parameters_before": None, "shrunk_during_training": True}
    small = shrink(net, plain=False)
    return small, {"channels": channels_report(before, channel_counts(small))}
