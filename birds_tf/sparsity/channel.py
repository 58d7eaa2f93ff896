"""Channel-level dynamic sparsity in the spirit of Chase (Yin et al., NeurIPS 2023, "Dynamic
Sparsity Is Channel-Level Sparsity Learner"): unstructured dynamic sparse training whose
sparse-amenable channels are removed gradually, their freed budget given back to the rest.

What is taken from Chase (paper Sections 3-4 and its released code, ``core_dst_chase.py``):
  * criterion: the Unmasked Mean Magnitude of an output channel, ``UMM_c = mean |w * m|`` over
    *all* of the channel's weights, pruned ones counted as zero (the code's ``--mag_wise``), so a
    channel scores low for being sparse (quantity) or small (quality) alike;
  * one global ranking of all removable channels (the code's ``prune_score``; here by default
    of UMM relative to its layer's mean, see ``channel_scores``), with a per-layer floor of ``floor(C (1 - S_c) r)`` kept channels (``minimum_layer``, ``r = --minumum_ratio``,
    0.5 in its scripts);
  * gradual removal on the cubic schedule of Zhu & Gupta (``gradual_pruning_rate``):
    ``s(t) = S_c (1 - (1 - p)^3)``, ``p = (t - t0) / (t1 - t0)`` clipped to [0, 1];
  * removable channels are the output channels of a convolution whose output reaches exactly one
    other convolution through per-channel layers only (BN, ReLU, padding, pooling). In a
    (PreAct)ResNet that is the first conv of each block (conv1 -> bn2 -> relu -> conv2), exactly
    the code's ``layer2split``; outputs that enter a residual add are never removed (the paper's
    default, not its "prune skip" variant), so shortcuts stay consistent by construction.
  * the parameter budget stays constant: Chase recomputes its ERK layer budget over the remaining
    weights (``update_erk_dic``) so the total count of active weights is unchanged.

Choices the papers leave open, made here:
  * a removed channel zeroes its producer filter *and* the consumer's input slice, both kept zero
    (never regrown). Zeroing the filter alone is not enough: BatchNorm turns a zero channel into
    the constant ``beta - gamma mean / sd`` that the next conv still reads. With the input slice
    masked the channel is dead, so the physical shrink (``birds_tf.export.shrink``) is exact;
  * channel removals happen at Flying Bird+'s mask-update events (right after the unstructured
    prune/grow, with the same dense gradients); the schedule is in fractions of the run;
  * the freed active weights (those the removed filters and slices held) are regrown among the
    allowed inactive positions of every masked layer, in shares proportional to each layer's
    active count (its IGQ share is kept), by dense-gradient magnitude (or at random with random
    growth), from zero with zero momentum: the global density stays on the target;
  * parameter sparsity is counted against the original (unshrunk) model, removed weights as
    pruned, so "80% sparsity" means 20% of the dense model's maskable weights remain active.
"""
import math

import numpy as np

from birds_tf.sparsity import masks as masks_lib
from birds_tf.sparsity.flying_bird import DynamicSparsity, update_layer_mask

# Layers that map channel c of their input to channel c of their output and nothing else.
_PER_CHANNEL = ("BatchNormalization", "ReLU", "Activation", "ZeroPadding2D", "MaxPooling2D",
                "AveragePooling2D", "Dropout")


def umm(kernel, mask=None):
    """Unmasked mean magnitude per output channel (last axis): ``mean |kernel * mask|`` over all
    of the channel's weights, pruned ones counted as zero.

    Args:
      kernel: a conv kernel ``(kh, kw, in, out)`` (or any array whose last axis is the channel).
      mask: its 0/1 mask (``None``: all ones).
    """
    w = np.abs(np.asarray(kernel, np.float64))
    if mask is not None:
        w = w * (np.asarray(mask) > 0)
    return w.reshape(-1, w.shape[-1]).mean(axis=0)


def channel_schedule(step, total_steps, channel_sparsity, start=0.0, end=0.5):
    """Fraction of removable channels that should be gone at ``step`` (cubic, Zhu & Gupta).

    Args:
      step, total_steps: the iteration and the run's length.
      channel_sparsity: the final fraction ``S_c``.
      start, end: fractions of the run where removal begins and reaches ``S_c``.
    """
    t0, t1 = start * total_steps, end * total_steps
    if step < t0:
        return 0.0
    p = 1.0 if t1 <= t0 else min(max((step - t0) / (t1 - t0), 0.0), 1.0)
    return channel_sparsity * (1.0 - (1.0 - p) ** 3)


def _outbound(layer):
    return [node.operation for node in getattr(layer, "_outbound_nodes", [])]


def _is_conv(layer):
    import keras
    return (isinstance(layer, keras.layers.Conv2D) and getattr(layer, "groups", 1) == 1
            and layer.data_format == "channels_last")


def removable_groups(net):
    """``[(producer, [per-channel layers], consumer)]``: convs whose output channels can go.

    The producer's output must reach exactly one consumer conv through a single chain of
    per-channel layers; anything else (a residual add, a flatten, a second reader) disqualifies
    it, so removing a channel touches exactly the producer's filter, the chain's per-channel
    entries and the consumer's input slice.
    """
    groups = []
    for layer in net.layers:
        if not _is_conv(layer):
            continue
        chain, current = [], layer
        while True:
            outs = _outbound(current)
            if len(outs) != 1:
                break
            nxt = outs[0]
            if _is_conv(nxt):
                groups.append((layer, chain, nxt))
                break
            if type(nxt).__name__ not in _PER_CHANNEL:
                break
            chain.append(nxt)
            current = nxt
    return groups


def kept_channels(original, gone=()):
    """Original indices of the channels a producer of ``original`` channels still has once
    ``gone`` (original indices) were physically removed, in the current model's order: position
    ``i`` of the narrowed layer is original channel ``kept_channels(...)[i]``."""
    gone = set(gone)
    return [c for c in range(int(original)) if c not in gone]


def current_positions(removed, physical, original):
    """``{producer: sorted positions in the current model}`` of the channels that are removed
    (dead) but still present: ``removed`` minus ``physical``, mapped through ``kept_channels``.

    The one place that turns original channel ids into positions of a narrowed model: the
    channel callback (which positions to keep dead) and the rebuild (which positions to cut)
    both use it. Producers with nothing pending are left out.

    Args:
      removed: ``{producer: [original index, ...]}`` removed so far.
      physical: ``{producer: [original index, ...]}`` the current model no longer has.
      original: ``{producer: channel count of the original model}``.
    """
    out = {}
    for name, idx in removed.items():
        where = {c: i for i, c in enumerate(kept_channels(original[name],
                                                          physical.get(name, ())))}
        cur = sorted(where[c] for c in idx if c in where)
        if cur:
            out[name] = cur
    return out


def min_kept(channels, channel_sparsity, min_ratio):
    """Chase's per-layer floor: ``floor(C (1 - S_c) r)``, at least one channel."""
    return max(1, int(math.floor(channels * (1.0 - channel_sparsity) * min_ratio)))


SCORE_MODES = ("layer_mean", "global")


def channel_scores(umms, alive, mode="layer_mean"):
    """Per-layer channel scores for the global ranking.

    ``'global'`` is Chase's: raw UMM compared across layers. ``'layer_mean'`` divides each
    layer's UMM by its mean over the layer's alive channels, so channels compete by how far below
    their own layer they sit. Why: raw UMM scales with a layer's init bound (1/sqrt(fan_in)) and
    its density (IGQ gives wide layers less), so a global raw ranking removes the late,
    parameter-heavy but FLOP-light layers first (PreActResNet-18 at 80% sparsity, S_c 0.5: 63%
    fewer parameters but only 27% fewer FLOPs), which buys little speed.
    """
    if mode not in SCORE_MODES:
        raise ValueError(f"Unknown channel score mode {mode!r}; allowed: {SCORE_MODES}.")
    out = []
    for u, al in zip(umms, alive):
        u = np.asarray(u, np.float64)
        if mode == "layer_mean":
            mean = u[np.asarray(al, bool)].mean() if np.any(al) else 0.0
            u = u / mean if mean > 0 else u
        out.append(u)
    return out


def select_channels(scores, alive, count, floors):
    """The ``count`` alive channels with the smallest score over all layers, no layer going
    below its floor; ties broken by layer order, then channel index.

    Args:
      scores, alive: per layer (a list), the channel scores and a bool array of alive channels.
      count: how many to remove.
      floors: per layer, the fewest channels it keeps.
    Returns:
      per layer, the sorted indices chosen.
    """
    order = sorted((float(s), li, c) for li, (sc, al) in enumerate(zip(scores, alive))
                   for c, s in enumerate(sc) if al[c])
    left = [int(np.sum(al)) for al in alive]
    chosen = [[] for _ in scores]
    for _, li, c in order:
        if count <= 0:
            break
        if left[li] <= floors[li]:
            continue
        chosen[li].append(c)
        left[li] -= 1
        count -= 1
    return [sorted(c) for c in chosen]


def allowed_positions(shape, producer_removed=(), consumer_removed=()):
    """Bool array of a kernel's positions that may be active: removed output channels (last
    axis) and removed input channels (axis -2) are not."""
    allowed = np.ones(shape, bool)
    if len(producer_removed):
        allowed[..., list(producer_removed)] = False
    if len(consumer_removed):
        allowed[..., list(consumer_removed), :] = False
    return allowed


def proportional_shares(total, weights, caps):
    """``total`` split in proportion to ``weights`` (largest remainder), each share capped by
    ``caps`` with the excess passed on to the layers that still have room."""
    shares = np.zeros(len(weights), np.int64)
    weights = np.asarray(weights, np.float64)
    caps = np.asarray(caps, np.int64)
    remaining = int(min(total, caps.sum()))
    while remaining > 0:
        room = caps - shares
        w = np.where(room > 0, weights, 0.0)
        if w.sum() <= 0:
            w = (room > 0).astype(np.float64)
        exact = remaining * w / w.sum()
        add = np.minimum(np.floor(exact).astype(np.int64), room)
        leftover = remaining - int(add.sum())
        frac = np.where(room - add > 0, exact - np.floor(exact), -1.0)
        for i in np.argsort(-frac, kind="stable")[:leftover]:
            if room[i] - add[i] > 0:
                add[i] += 1
        if add.sum() == 0:
            break
        shares += add
        remaining -= int(add.sum())
    return shares


class ChannelSchedule:
    """When and how many channels go (see the module docstring).

    Args:
      channel_sparsity: final fraction ``S_c`` of the removable channels removed (Chase's
        ``start_layer_rate``, 0.5 in its ResNet scripts).
      start, end: fractions of the run where removal starts and reaches ``S_c`` (Chase: step 0
        to 130 of 160 epochs; the default 0.5 leaves the second half to train the narrow net).
      min_ratio: Chase's ``minumum_ratio``: each layer keeps ``floor(C (1 - S_c) min_ratio)``.
      score: ``'layer_mean'`` (default: UMM relative to its layer's mean) or ``'global'``
        (Chase's raw UMM); see ``channel_scores``.
    """

    def __init__(self, channel_sparsity=0.5, start=0.0, end=0.5, min_ratio=0.5,
                 score="layer_mean"):
        if score not in SCORE_MODES:
            raise ValueError(f"Unknown channel score {score!r}; allowed: {SCORE_MODES}.")
        self.score = score
        if not 0.0 < channel_sparsity < 1.0:
            raise ValueError(f"channel_sparsity must be in (0, 1), got {channel_sparsity!r} "
                             "(0.5 removes half of the removable channels).")
        if not 0.0 <= start <= end <= 1.0:
            raise ValueError(f"Need 0 <= start <= end <= 1 (fractions of the run), got "
                             f"start={start!r}, end={end!r}.")
        if not 0.0 <= min_ratio <= 1.0:
            raise ValueError(f"min_ratio must be in [0, 1], got {min_ratio!r}.")
        self.channel_sparsity = float(channel_sparsity)
        self.start, self.end = float(start), float(end)
        self.min_ratio = float(min_ratio)

    def target(self, step, total_steps, channels):
        """Channels (out of ``channels`` removable ones) that should be gone at ``step``."""
        return int(round(channels * channel_schedule(step, total_steps, self.channel_sparsity,
                                                     self.start, self.end)))


class ChannelDynamicSparsity(DynamicSparsity):
    """Flying Bird(+) mask updates plus Chase-style gradual channel removal.

    Every ``DynamicSparsity`` setting is a keyword argument (``train_eval`` passes the
    ``DynamicSparsity.*`` gin bindings); the schedule is a ``ChannelSchedule``. ``removed``
    (``{producer: [channel, ...]}``) is checkpointed state;
    removed positions never take part in the unstructured prune/grow again.

    Args:
      plus: Flying Bird+ (default) or Flying Bird for the unstructured part.
      schedule: a ``ChannelSchedule`` (``None``: its defaults).
      removed: channels already removed (a resumed or physically shrunk run passes its own).
      shrink_during_training: stop ``fit`` at the end of an epoch that removed channels (after
        its checkpoint), so the caller rebuilds the model without them
        (``birds_tf.experiment.flying_bird_channel``); ``physical`` then lists the channels that
        the current model no longer has. All indices are the original model's.
      shrink_min_fraction: rebuild only once the removed-but-present channels reach this fraction
        of the removable ones, or the schedule's final count is reached (every rebuild retraces
        the training graph, which at small scale costs more than the narrower epochs save).
      shrink_at_target: also rebuild when the schedule's final count is reached with fewer than
        ``shrink_min_fraction`` waiting (``False``: those last channels stay dead but present,
        masked, until ``launch.export --shrink``; saves one retrace for a few channels).
    """

    def __init__(self, plus=True, schedule=None, removed=None, shrink_during_training=False,
                 shrink_min_fraction=0.1, shrink_at_target=True, **kwargs):
        super().__init__(plus=plus, **kwargs)
        self.schedule = schedule or ChannelSchedule()
        self.removed = {k: sorted(int(c) for c in v) for k, v in (removed or {}).items()}
        self.physical = {}
        self.shrinks = []  # physical shrinks done between fit segments (recorded by the caller)
        self.shrink_during_training = bool(shrink_during_training)
        self.shrink_min_fraction = float(shrink_min_fraction)
        self.shrink_at_target = bool(shrink_at_target)
        self.channel_events = []
        self.original_channels = {}
        self.original_weights = None

    def set_model(self, model):
        super().set_model(model)
        net = getattr(model, "net", model)
        by_name = {layer.name: layer for layer in self._layers}
        self._groups = [(p, c) for p, chain, c in removable_groups(net)
                        if p.name in by_name and c.name in by_name]
        if not self._groups:
            raise ValueError("Channel removal found no removable convolution (one whose output "
                             "reaches a single masked conv through BN/ReLU/padding only); use "
                             "fb_plus for this architecture.")
        for p, _ in self._groups:
            self.original_channels.setdefault(
                p.name, int(p.filters) + len(self.physical.get(p.name, ())))
        if self.original_weights is None:  # a fresh run: the model still has every channel
            self.original_weights = int(sum(np.prod(l.kernel.shape) for l in self._layers))

    def density_vs_original(self):
        """Active weights over the *original* model's maskable weights (removed ones count as
        pruned), the figure the target sparsity is about."""
        active = sum(int(np.asarray(layer.mask.numpy()).sum()) for layer in self._layers)
        return active / self.original_weights

    # -- original <-> current channel indices ---------------------------------------------------
    def kept_original(self, name):
        """Original indices of the channels the current model still has, in its order."""
        return kept_channels(self.original_channels[name], self.physical.get(name, ()))

    def pending(self):
        """``{producer: current indices}`` removed (dead) but still in the model."""
        return current_positions(self.removed, self.physical, self.original_channels)

    # -- allowed positions --------------------------------------------------------------------
    def _allowed(self):
        out = {}
        consumer_of = {p.name: c.name for p, c in self._groups}
        pending = self.pending()
        for layer in self._layers:
            prod = pending.get(layer.name, ())
            cons = ()
            for p_name, c_name in consumer_of.items():
                if c_name == layer.name:
                    cons = pending.get(p_name, ())
            out[layer.name] = allowed_positions(tuple(layer.kernel.shape), prod, cons)
        return out

    def _after_update(self, grads):
        """After FB(+)'s prune/grow (restricted to ``_allowed``): any channel removal due."""
        self.remove_channels(grads)

    # -- channel removal ----------------------------------------------------------------------
    def total_channels(self):
        return sum(self.original_channels[p.name] for p, _ in self._groups)

    def removed_count(self):
        return sum(len(v) for v in self.removed.values())

    def remove_channels(self, grads=None):
        """Remove channels up to the schedule's target; returns the event (or ``None``)."""
        total = self.total_channels()
        want = self.schedule.target(self.step, self._total(), total) - self.removed_count()
        if want <= 0:
            return None
        scores, alive, floors = [], [], []
        for p, _ in self._groups:
            gone = set(self.removed.get(p.name, ()))
            scores.append(umm(p.kernel.numpy(), p.mask.numpy()))
            alive.append(np.array([c not in gone for c in self.kept_original(p.name)]))
            floors.append(min_kept(self.original_channels[p.name],
                                   self.schedule.channel_sparsity, self.schedule.min_ratio))
        scores = channel_scores(scores, alive, self.schedule.score)
        chosen = select_channels(scores, alive, want, floors)
        optimizer = self._optimizer()
        nnz_before = sum(int(np.asarray(layer.mask.numpy()).sum()) for layer in self._layers)
        for (p, c), idx in zip(self._groups, chosen):
            if not idx:
                continue
            kept = self.kept_original(p.name)
            self.removed[p.name] = sorted(set(self.removed.get(p.name, ()))
                                          | {kept[i] for i in idx})
            for layer, zero in ((p, allowed_positions(tuple(p.kernel.shape), idx)),
                                (c, allowed_positions(tuple(c.kernel.shape), (), idx))):
                mask = np.asarray(layer.mask.numpy()) * zero
                masks_lib.assign_mask_and_reset(layer, mask, mask > 0, optimizer)
        nnz_mid = sum(int(np.asarray(layer.mask.numpy()).sum()) for layer in self._layers)
        regrown = self._redistribute(nnz_before - nnz_mid, grads or {})
        event = {"step": self.step, "epoch": self.epoch + 1,
                 "removed": {p.name: [self.kept_original(p.name)[i] for i in idx]
                             for (p, _), idx in zip(self._groups, chosen) if idx},
                 "channels_removed_total": self.removed_count(), "freed": nnz_before - nnz_mid,
                 "regrown": regrown}
        self.channel_events.append(event)
        return event

    def _redistribute(self, freed, grads):
        """Regrow ``freed`` weights among allowed inactive positions, shares proportional to each
        layer's active count; new weights start at zero with zero momentum."""
        if freed <= 0:
            return 0
        allowed = self._allowed()
        layers = self._layers
        masks = [np.asarray(layer.mask.numpy()) > 0 for layer in layers]
        caps = [int((allowed[layer.name] & ~m).sum()) for layer, m in zip(layers, masks)]
        shares = proportional_shares(freed, [m.sum() for m in masks], caps)
        optimizer = self._optimizer()
        for layer, m, share in zip(layers, masks, shares):
            if share <= 0:
                continue
            candidates = np.flatnonzero(allowed[layer.name].reshape(-1) & ~m.reshape(-1))
            grad = grads.get(layer.name)
            if grad is not None:
                g = np.abs(np.asarray(grad, np.float64).reshape(-1))[candidates]
                pick = candidates[np.argsort(-g, kind="stable")[:share]]
            else:
                pick = self._rng.choice(candidates, size=int(share), replace=False)
            new = m.reshape(-1).copy()
            new[pick] = True
            new = new.reshape(m.shape)
            masks_lib.assign_mask_and_reset(layer, new.astype(np.float32), m, optimizer)
        return int(shares.sum())

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if logs is not None:
            logs["channels_removed"] = float(self.removed_count())
            logs["density_vs_original"] = self.density_vs_original()
        epochs = (self.params or {}).get("epochs") or self._epochs
        if self.shrink_during_training and epochs and epoch + 1 < epochs and self._rebuild_due():
            self.model.stop_training = True  # the checkpoint of this epoch is written after us

    def _rebuild_due(self):
        pending = sum(len(v) for v in self.pending().values())
        if not pending:
            return False
        total = self.total_channels()
        final = (self.shrink_at_target
                 and self.removed_count() >= round(total * self.schedule.channel_sparsity))
        return final or pending >= self.shrink_min_fraction * total

    def channels_per_layer(self):
        """``{producer: {"before": original, "after": alive}}``."""
        return {name: {"before": n, "after": n - len(self.removed.get(name, ()))}
                for name, n in self.original_channels.items()}

    # -- checkpointed state -------------------------------------------------------------------
    def get_state(self):
        state = super().get_state()
        state.update(removed=self.removed, physical=self.physical, shrinks=list(self.shrinks),
                     channel_events=[dict(e) for e in self.channel_events],
                     original_channels=dict(self.original_channels),
                     original_weights=self.original_weights)
        return state

    def set_state(self, state):
        super().set_state(state)
        self.removed = {k: sorted(int(c) for c in v) for k, v in state.get("removed", {}).items()}
        self.physical = {k: sorted(int(c) for c in v)
                         for k, v in state.get("physical", {}).items()}
        self.channel_events = list(state.get("channel_events", []))
        self.shrinks = list(state.get("shrinks", []))
        self.original_channels.update(state.get("original_channels", {}))
        self.original_weights = state.get("original_weights", self.original_weights)
