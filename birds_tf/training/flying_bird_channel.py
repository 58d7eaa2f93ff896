"""Channel-level Flying Bird+ (``fb_plus_channel``) as a ``train_eval`` method: Flying Bird+'s
unstructured prune/grow and adaptive ratios, plus Chase-style gradual channel removal with the
freed budget redistributed (``birds_tf.sparsity.channel``). Its removed channels are dead in the
masked model, so ``launch.export --shrink`` rebuilds it physically narrower with equal logits.
"""
import gin

from birds_tf.sparsity.channel import ChannelDynamicSparsity, ChannelSchedule
from birds_tf.training import resume
from birds_tf.training.flying_bird import FlyingBirdPlus


@gin.configurable
class FlyingBirdPlusChannel(FlyingBirdPlus):
    name = "fb_plus_channel"

    def __init__(self, config, **kwargs):
        # FlyingBirdPlus' settings (distribution, ...) come from its own gin bindings.
        super().__init__(config, **kwargs)
        ChannelSchedule()  # a bad gin binding fails before any data or model work

    def callbacks(self, exp, model, state):
        self.callback = ChannelDynamicSparsity(plus=True, schedule=ChannelSchedule())
        if self.callback.seed is None:
            self.callback.set_seed(self.config.seed)
        saved = resume.callback_state(state, self.callback)
        if saved is not None:
            self.callback.set_state(saved)
        return [self.callback]

    def results(self, exp, model):
        out = super().results(exp, model)
        cb = self.callback
        if cb is None:
            return out
        total = cb.total_channels()
        out.update({
            "channel_sparsity_target": cb.schedule.channel_sparsity,
            "channel_schedule": [cb.schedule.start, cb.schedule.end],
            "channels_removable": total,
            "channels_removed": cb.removed_count(),
            "channel_sparsity": cb.removed_count() / total if total else 0.0,
            "channels_removed_per_layer": {k: len(v) for k, v in cb.removed.items()},
            "channel_removal_events": cb.channel_events,
        })
        return out
