"""Flying Bird and Flying Bird+ as ``train_eval`` methods: a random sparse init with a layer-wise
budget (IGQ by default, paper Section 4), then PGD-AT with the ``DynamicSparsity`` callback.
"""
import gin

from birds_tf.sparsity import distributions
from birds_tf.sparsity.dynamic import DynamicSparsity
from birds_tf.training import methods, resume

DISTRIBUTIONS = ("igq", "erk", "er", "uniform", "snip")


@gin.configurable
class FlyingBird(methods.Method):
    name = "fb"
    sparse = True
    plus = False

    def __init__(self, config, distribution="igq", init_seed=None, snip_batches=1):
        super().__init__(config)
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"Unknown sparsity distribution {distribution!r}; allowed: "
                             f"{DISTRIBUTIONS}.")
        if not config.sparsity > 0:
            raise ValueError(f"Method {config.method!r} needs a target sparsity in (0, 1), got "
                             f"{config.sparsity!r}; set train_eval.sparsity (e.g. 0.8).")
        # Build the callback once now so a bad gin binding fails before any data or model work.
        DynamicSparsity(plus=self.plus)
        self.distribution = distribution
        self.init_seed = config.seed if init_seed is None else init_seed
        self.snip_batches = snip_batches
        self.callback = None

    def prepare(self, exp, state):
        net = exp.build_net()
        data = None
        if self.distribution == "snip":
            data = list(exp.splits.train.take(self.snip_batches))
        distributions.init_sparse(net, 1.0 - self.config.sparsity, self.distribution,
                                  self.init_seed, data=data)
        return net, exp.make_trainer(net)

    def callbacks(self, exp, model, state):
        self.callback = DynamicSparsity(plus=self.plus)
        if self.callback.seed is None:
            # Random growth must differ across runs: unless bound, its seed is the run's.
            self.callback.set_seed(self.config.seed)
        saved = resume.callback_state(state, self.callback)
        if saved is not None:
            self.callback.set_state(saved)
        return [self.callback]

    def results(self, exp, model):
        cb = self.callback
        if cb is None:
            return {}
        return {"distribution": self.distribution, "mask_updates": cb.updates,
                "delta_t": cb.delta_t, "delta_t_late": cb.delta_t_late, "growth": cb.growth,
                "growth_seed": cb.seed, "prune_ties": cb.prune_ties,
                "reset_regrown": cb.reset_regrown,
                "mask_update_events": cb.events}


@gin.configurable
class FlyingBirdPlus(FlyingBird):
    name = "fb_plus"
    plus = True

