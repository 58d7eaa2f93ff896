"""Channel-level Flying Bird+ (``fb_plus_channel``) as a ``train_eval`` method: Flying Bird+'s
unstructured prune/grow and adaptive ratios, plus Chase-style gradual channel removal with the
freed budget redistributed (``birds_tf.sparsity.channel``). Removed channels are dead in the
masked model, so ``launch.export --shrink`` rebuilds it physically narrower with equal logits.

With ``shrink_during_training`` (default) the run also *gets faster*: an epoch that removed
channels ends ``fit`` after its checkpoint (``ChannelDynamicSparsity`` sets ``stop_training``);
``train_eval.run_main`` then asks this plug-in how to rebuild (``rebuild_plan``: which channels
of the current model, ``rebuild``: the model without them, weights, masks, BN statistics,
momentum, iteration count and attack RNG carried over), checkpoints the narrow model, records
it in ``state.json`` and continues. A crash anywhere resumes: before the new ``state.json`` the
shrink is redone from the wide checkpoint, after it ``prepare`` rebuilds the narrow model from
the recorded ``physical`` channels. The original-id -> position arithmetic is
``birds_tf.sparsity.channel.current_positions``, shared with the callback.

FLOPs: every epoch's row of ``metrics.csv`` records the forward FLOPs of one image on the
structure that epoch ran on (``forward_flops``: mask-effective, ``forward_flops_dense``: every
weight of that structure), so ``training_flops`` (``metrics.flop_count``) counts the epochs
before a shrink on the wider model they ran on, not on the final one (which would be a lower
bound).
"""
import gin
import keras
import numpy as np

from birds_tf.experiment import method as method_lib
from birds_tf.experiment.flying_bird import FlyingBirdPlus
from birds_tf.export import shrink as shrink_lib
from birds_tf.metrics import flop_count
from birds_tf.sparsity import channel as channel_lib
from birds_tf.training import resume
from birds_tf.utils.optimizer_slots import momentum_buffer

# The channel schedule with gin bindings applied (``ChannelSchedule.*``); the sparsity module's
# class stays gin-free.
ChannelSchedule = gin.external_configurable(channel_lib.ChannelSchedule, "ChannelSchedule")
_STATE_KEY = channel_lib.ChannelDynamicSparsity.__name__


@gin.configurable
class FlyingBirdPlusChannel(FlyingBirdPlus):
    """Args (besides ``FlyingBirdPlus``' own, from its gin bindings):
      shrink_during_training: rebuild the model narrower after an epoch that removed channels
        (``False``: dead channels stay masked until ``launch.export --shrink``).
      shrink_min_fraction: rebuild once at least this fraction of the removable channels waits
        (or the schedule is complete); see ``ChannelDynamicSparsity``.
      shrink_at_target: rebuild for the schedule's last channels even when fewer than
        ``shrink_min_fraction`` wait (``False``: they stay masked; one retrace fewer).
    """

    mid_epoch_resume = False  # a resume may rebuild the model narrower, only at an epoch's end
    rebuilds_model = True

    def __init__(self, config, shrink_during_training=True, shrink_min_fraction=0.1,
                 shrink_at_target=True, **kwargs):
        if not 0.0 <= shrink_min_fraction <= 1.0:
            raise ValueError(f"shrink_min_fraction must be in [0, 1], got "
                             f"{shrink_min_fraction!r}.")
        if not isinstance(shrink_at_target, bool):
            raise ValueError(f"shrink_at_target must be True or False, got "
                             f"{shrink_at_target!r}.")
        self.shrink_during_training = bool(shrink_during_training)
        self.shrink_min_fraction = float(shrink_min_fraction)
        self.shrink_at_target = shrink_at_target
        # FlyingBirdPlus' settings (distribution, ...) come from its own gin bindings; it builds
        # the callback (``make_callback``), so bad bindings fail before any data or model work.
        super().__init__(config, **kwargs)

    def make_callback(self):
        """``ChannelDynamicSparsity`` with the ``DynamicSparsity.*`` and ``ChannelSchedule.*``
        gin bindings."""
        settings = dict(gin.get_bindings("DynamicSparsity"))
        settings.pop("plus", None)
        callback = channel_lib.ChannelDynamicSparsity(
            plus=True, schedule=ChannelSchedule(),
            shrink_during_training=self.shrink_during_training,
            shrink_min_fraction=self.shrink_min_fraction,
            shrink_at_target=self.shrink_at_target, **settings)
        if callback.seed is None:
            callback.set_seed(self.config.seed)
        return callback

    def callbacks(self, exp, model, state):
        if self._running:  # a later segment of run_main: a fresh callback, restored from state
            self.callback = self.make_callback()
        return super().callbacks(exp, model, state) + [StructureFlops()]

    # -- the model rebuilt narrower between epochs (``train_eval.run_main`` runs the loop) -------
    def check_run(self, exp):
        """A model rebuilt mid-run cannot average weights (SWA) nor carry a loss scale yet."""
        if self.shrink_during_training and exp.smoothing.swa.enabled:
            raise ValueError("SWA averages weights across epochs, which a model rebuilt narrower "
                             "mid-run cannot do; set FlyingBirdPlusChannel."
                             "shrink_during_training = False (export with --shrink instead) or "
                             "turn SWA off.")
        if self.shrink_during_training and self.config.mixed_precision == "mixed_float16":
            raise ValueError("shrink_during_training does not carry a LossScaleOptimizer's "
                             "state yet; use mixed_precision=None or 'mixed_bfloat16', or set "
                             "FlyingBirdPlusChannel.shrink_during_training = False.")

    def prepare(self, exp, state):
        """FB+'s net and trainer; on a resume the net narrowed to the channels the saved state
        says the checkpoint no longer has (``physical``)."""
        net, model = super().prepare(exp, state)
        physical = (self._saved(state) or {}).get("physical") or {}
        if physical:  # the checkpoint's own structure
            with exp.strategy.scope():
                net = shrink_lib.narrow(net, physical)
            model = exp.make_trainer(net)
        return net, model

    @staticmethod
    def _saved(state):
        """The channel callback's saved state once the main stage has begun, else ``None``."""
        return state.callback_state(_STATE_KEY) if resume.in_main_stage(state) else None

    def rebuild_plan(self, exp, model, state):
        """``{producer: current positions}`` of the removed channels the model still has, or
        ``None`` (nothing pending, or ``shrink_during_training`` off)."""
        saved = self._saved(state)
        if not (self.shrink_during_training and saved):
            return None
        physical = saved.get("physical") or {}
        removed = saved.get("removed", {})
        net = model.net
        original = {name: int(net.get_layer(name).filters) + len(physical.get(name, ()))
                    for name in removed}
        current = channel_lib.current_positions(removed, physical, original)
        if not current:
            return None
        return {"epoch": int(state.epoch), "current": current, "physical": physical,
                "removed": removed, "shrinks": list(saved.get("shrinks", []))}

    def rebuild(self, exp, model, plan):
        """The trainer narrowed by ``plan["current"]``: weights, masks and BN statistics sliced,
        momentum sliced alike, iteration count and attack RNG carried; the callback's record
        gains the new ``physical`` channels and a ``shrinks`` entry."""
        net, current = model.net, plan["current"]
        with exp.strategy.scope():
            new_net = shrink_lib.narrow(net, current)
        new_model = exp.make_trainer(new_net)
        _carry_optimizer(model, new_model, shrink_lib.paired_variables(net, new_net),
                         shrink_lib.slicing_plan(net, current))
        physical = plan["physical"]
        record = {
            "physical": {k: sorted(set(physical.get(k, ())) | set(v))
                         for k, v in plan["removed"].items()},
            "shrinks": plan["shrinks"] + [{
                "epoch": plan["epoch"], "channels": {k: len(v) for k, v in current.items()},
                "filters_after": {k: int(new_net.get_layer(k).filters) for k in current}}]}
        return method_lib.Rebuilt(new_model, {_STATE_KEY: record}, label="shrink")

    def settings(self, exp=None):
        """FB+'s settings plus the channel schedule and the shrink policy."""
        schedule = self.callback.schedule
        out = super().settings(exp)
        out.update(channel_sparsity=schedule.channel_sparsity, channel_start=schedule.start,
                   channel_end=schedule.end, channel_min_ratio=schedule.min_ratio,
                   channel_score=schedule.score,
                   shrink_during_training=self.shrink_during_training,
                   shrink_min_fraction=self.shrink_min_fraction,
                   shrink_at_target=self.shrink_at_target)
        return out

    def results(self, exp, model):
        out = super().results(exp, model)
        if not self._running:
            return out
        cb = self.callback
        total = cb.total_channels()
        out.update({
            "channel_sparsity_target": cb.schedule.channel_sparsity,
            "channel_schedule": [cb.schedule.start, cb.schedule.end],
            "channel_score": cb.schedule.score,
            "channels_removable": total,
            "channels_removed": cb.removed_count(),
            "channel_sparsity": cb.removed_count() / total if total else 0.0,
            # final_sparsity is over the (possibly shrunk) final model; this is over the original.
            "final_sparsity_vs_original": 1.0 - cb.density_vs_original(),
            "channels_per_layer": cb.channels_per_layer(),
            "channel_removal_events": cb.channel_events,
            "shrink_during_training": self.shrink_during_training,
            "shrinks": cb.shrinks,
        })
        return out


class StructureFlops(keras.callbacks.Callback):
    """Logs the forward FLOPs of one image on the model as it is at each epoch's end.

    Why: a run rebuilt narrower mid-run trains its early epochs on a wider model than the final
    one; ``flop_count.training_flops`` reads these two entries to count each epoch on its own
    structure. ``forward_flops``: 2 x mask-effective MACs; ``forward_flops_dense``: 2 x MACs of
    every kernel weight of the structure (what a dense kernel executes).
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        counted = flop_count.count(getattr(self.model, "net", self.model))
        logs["forward_flops"] = counted.flops
        logs["forward_flops_dense"] = counted.flops_dense


def _carry_optimizer(old, new, pairs, plan):
    """Iteration count, momentum (sliced like the weights) and the attack RNG, old -> new."""
    old_opt = getattr(old.optimizer, "inner_optimizer", old.optimizer)
    new_opt = getattr(new.optimizer, "inner_optimizer", new.optimizer)
    if not new_opt.built:
        new_opt.build(new.trainable_variables)
    new_opt.iterations.assign(old_opt.iterations)
    trainable = {id(v) for v in old.trainable_variables}
    for layer_name, a, b in pairs:
        if id(a) not in trainable:
            continue
        momentum_buffer(new_opt, b).assign(
            shrink_lib.slice_value(plan, layer_name,
                                   np.asarray(momentum_buffer(old_opt, a).numpy())))
    if getattr(old, "rng", None) is not None and getattr(new, "rng", None) is not None:
        new.rng.state.assign(old.rng.state)
