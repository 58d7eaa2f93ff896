"""Flying Bird and Flying Bird+ as ``train_eval`` methods: a random sparse init with a layer-wise
budget (IGQ by default, paper Section 4), then PGD-AT with the ``DynamicSparsity`` callback
(``birds_tf.sparsity.flying_bird``), whose knobs gin binds as ``DynamicSparsity.*``.
"""
import gin

from birds_tf.experiment import method
from birds_tf.metrics.flop_count import MaskUpdates, MethodCosts
from birds_tf.sparsity import distributions
from birds_tf.sparsity import flying_bird as flying_bird_lib
from birds_tf.training import resume
from birds_tf.utils import checks

# The mask-update callback with gin bindings applied; ``birds_tf.DynamicSparsity`` stays gin-free.
DynamicSparsity = gin.external_configurable(flying_bird_lib.DynamicSparsity, "DynamicSparsity")


@gin.configurable
class FlyingBird(method.Method):
    sparse = True
    plus = False

    def __init__(self, config, distribution="igq", init_seed=None, snip_batches=1):
        super().__init__(config)
        if distribution not in distributions.DISTRIBUTIONS:
            raise ValueError(f"Unknown sparsity distribution {distribution!r}; allowed: "
                             f"{distributions.DISTRIBUTIONS}.")
        checks.target_sparsity(config)
        # Built once, here, so a bad DynamicSparsity binding fails before any data or model work.
        self.callback = self.make_callback()
        self.distribution = distribution
        self.init_seed = config.seed if init_seed is None else init_seed
        self.snip_batches = snip_batches
        self._running = False

    def make_callback(self):
        """The mask-update callback, ``DynamicSparsity.*`` bindings applied; a subclass with
        its own callback (``fb_plus_channel``) overrides this."""
        callback = DynamicSparsity(plus=self.plus)
        if callback.seed is None:
            # Random growth must differ across runs: unless bound, its seed is the run's.
            callback.set_seed(self.config.seed)
        return callback

    def prepare(self, exp, state):
        net = exp.build_net()
        data = None
        if self.distribution == "snip":
            data = list(exp.splits.train.take(self.snip_batches))
        distributions.init_sparse(net, 1.0 - self.config.sparsity, self.distribution,
                                  self.init_seed, data=data)
        return net, exp.make_trainer(net)

    def callbacks(self, exp, model, state):
        self._running = True
        return [resume.restore_callback(state, self.callback)]

    def costs(self, exp, model):
        if not self._running:
            return MethodCosts()
        return MethodCosts(mask_updates=MaskUpdates(tuple(self.callback.events),
                                                    self.callback.growth == "gradient"))

    def settings(self, exp=None):
        """Init and ``DynamicSparsity`` settings as used: ``t_start`` (``None``: half the
        epochs) and ``total_steps`` (``None``: every step of the run, known with ``exp``)
        resolved; FB+'s trigger settings only for FB+ (Flying Bird never reads them)."""
        cb = self.callback
        total = cb.total_steps
        if total is None and exp is not None:
            total = int(self.config.epochs) * int(exp.splits.steps_per_epoch)
        out = {"distribution": self.distribution, "init_seed": self.init_seed,
               "delta_t": cb.delta_t, "delta_t_late": cb.delta_t_late, "k_init": cb.k_init,
               "k_min": cb.k_min, "total_steps": total, "growth": cb.growth,
               "gradient_topk": cb.gradient_topk, "growth_seed": cb.seed,
               "prune_ties": cb.prune_ties, "reset_regrown": cb.reset_regrown}
        if self.distribution == "snip":
            out["snip_batches"] = self.snip_batches
        if cb.plus:
            out.update(threshold=cb.threshold, queue_length=cb.queue_length,
                       t_start=cb.t_start if cb.t_start is not None
                       else int(self.config.epochs) // 2,
                       prune_ratio=cb.prune_ratio, growth_ratio=cb.growth_ratio)
        return out

    def results(self, exp, model):
        if not self._running:
            return {}
        cb = self.callback
        return {"distribution": self.distribution, "mask_updates": cb.updates,
                "delta_t": cb.delta_t, "delta_t_late": cb.delta_t_late, "growth": cb.growth,
                "gradient_topk": cb.gradient_topk, "growth_seed": cb.seed, "prune_ties": cb.prune_ties,
                "reset_regrown": cb.reset_regrown,
                "mask_update_events": cb.events}


@gin.configurable
class FlyingBirdPlus(FlyingBird):
    plus = True
