"""Method plug-ins for ``train_eval``: each says how its model is prepared, which callbacks its
PGD-AT run needs, and what it adds to ``results.json``.

Plug-ins register by name with a lazy "module:Class" path so importing the registry stays cheap.
"""
import importlib

_REGISTRY = {
    "dense": "birds_tf.training.methods:Dense",
    "fb": "birds_tf.training.flying_bird:FlyingBird",
    "fb_plus": "birds_tf.training.flying_bird:FlyingBirdPlus",
    "fb_plus_channel": "birds_tf.training.flying_bird_channel:FlyingBirdPlusChannel",
    "rb": "birds_tf.training.robust_bird:RobustBird",
    "random": "birds_tf.training.static_pruning:RandomPruning",
    "igq": "birds_tf.training.static_pruning:IGQPruning",
    "erk": "birds_tf.training.static_pruning:ERKPruning",
    "omp": "birds_tf.training.static_pruning:OMP",
    "prune_at_init": "birds_tf.training.static_pruning:PruneAtInit",
    "snip": "birds_tf.training.static_pruning:SNIP",
    "grasp": "birds_tf.training.static_pruning:GraSP",
    "synflow": "birds_tf.training.static_pruning:SynFlow",
    "small_dense": "birds_tf.training.static_pruning:SmallDense",
    "gmp": "birds_tf.training.static_pruning:GMP",
    "iwi": "birds_tf.training.iwi:InverseWeightsInheritance",
}


def register(name, target):
    _REGISTRY[name] = target


def names():
    return sorted(_REGISTRY)


def get(name):
    if name not in _REGISTRY:
        raise ValueError(f"Unknown method {name!r}; allowed: {names()}.")
    module, cls = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


class Method:
    """Base plug-in: a dense PGD-AT run with no extra callbacks."""

    name = "base"
    sparse = False

    def __init__(self, config):
        self.config = config
        if not self.sparse and config.sparsity:
            raise ValueError(f"Method {config.method!r} trains a dense model; target sparsity "
                             f"must be 0, got {config.sparsity!r}.")

    def prepare(self, exp, state):
        """Build the net (after any pre-training stage) and its trainer."""
        net = exp.build_net()
        return net, exp.make_trainer(net)

    def callbacks(self, exp, model, state):
        return []

    def results(self, exp, model):
        return {}


class Dense(Method):
    name = "dense"
