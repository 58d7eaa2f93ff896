"""Every method birds-tf trains, declared once: its name, its display name, its plug-in class.

Why here, and why data: the name is what ``train_eval.method`` takes and ``results.json``'s
``method`` holds; the display name is what the paper's tables and figure legends print
(``metrics.table``, ``plots.common``, which start without TensorFlow); the plug-in class (its
gin configurable has the class's name) is what the experiment layer's registry
(``birds_tf.experiment.method``) imports on first use, and what ``experiment.configurables``
imports to register the gin names. Each of those is derived from ``METHODS``, so adding a method
is its plug-in class plus one ``MethodSpec`` line; this module imports nothing of birds-tf and
only names the plug-in modules, it never loads them.

The order is the paper's Table 1 (the tables sort by it); methods without a display name are
printed by their name and sorted after the paper's.
"""
import dataclasses

__all__ = ["MethodSpec", "METHODS", "DISPLAY_NAMES", "ORDER", "declare", "spec", "specs", "names"]


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """One method.

    Args:
      name: ``train_eval.method`` and ``results.json``'s ``method``.
      plugin: its plug-in class as ``"module:Class"``; the class's gin name is ``Class``.
      display_name: the paper's name for tables and legends (``None``: shown as ``name``).
      aliases: older ``results.json`` names shown with the same display name, listed before it.
    """

    name: str
    plugin: str
    display_name: str = None
    aliases: tuple = ()

    @property
    def module(self):
        return self.plugin.split(":")[0]

    @property
    def class_name(self):
        """The plug-in's class name, which is also its gin configurable's name."""
        return self.plugin.split(":")[1]


def _spec(name, module, cls, display_name=None, aliases=()):
    return MethodSpec(name, f"birds_tf.experiment.{module}:{cls}", display_name, aliases)


METHODS = (
    _spec("dense", "method", "Dense", "Baseline"),
    _spec("small_dense", "static_pruning", "SmallDense", "Small Dense"),
    _spec("random", "static_pruning", "RandomPruning", "Random Pruning", aliases=("rp",)),
    _spec("omp", "static_pruning", "OMP", "OMP"),
    _spec("snip", "static_pruning", "SNIP", "SNIP"),
    _spec("grasp", "static_pruning", "GraSP", "GraSP"),
    _spec("synflow", "static_pruning", "SynFlow", "SynFlow"),
    _spec("igq", "static_pruning", "IGQPruning", "IGQ"),
    _spec("rb", "robust_bird", "RobustBird", "Robust Bird"),
    _spec("fb", "flying_bird", "FlyingBird", "Flying Bird"),
    _spec("fb_plus", "flying_bird", "FlyingBirdPlus", "Flying Bird+"),
    _spec("fb_plus_channel", "flying_bird_channel", "FlyingBirdPlusChannel",
          "Flying Bird+ (channel)"),
    # beyond the paper's Table 1: printed by their names
    _spec("erk", "static_pruning", "ERKPruning"),
    _spec("prune_at_init", "static_pruning", "PruneAtInit"),
    _spec("gmp", "static_pruning", "GMP"),
    _spec("iwi", "iwi", "InverseWeightsInheritance"),
)

# Derived (kept up to date by ``declare``): {results name: display name} in table order, and
# that order.
DISPLAY_NAMES = {}
ORDER = []
_BY_NAME = {}


def declare(method):
    """Add (or replace) a method, e.g. a plug-in of your own: ``declare(MethodSpec("mine",
    "my_package.module:MyMethod", "My Method"))``; returns it."""
    if not isinstance(method, MethodSpec):
        raise TypeError(f"declare takes a MethodSpec, got {type(method).__name__} {method!r}.")
    if method.plugin.count(":") != 1:
        raise ValueError(f"MethodSpec.plugin must be 'module:Class', got {method.plugin!r}.")
    _BY_NAME[method.name] = method
    if method.display_name is not None:
        for name in (*method.aliases, method.name):
            DISPLAY_NAMES[name] = method.display_name
        ORDER[:] = list(DISPLAY_NAMES)
    return method


def spec(name):
    """The ``MethodSpec`` of ``name``; ``ValueError`` naming the known ones."""
    if name not in _BY_NAME:
        raise ValueError(f"Unknown method {name!r}; allowed: {names()}.")
    return _BY_NAME[name]


def names():
    """Every declared method's name, sorted."""
    return sorted(_BY_NAME)


def specs():
    """Every declared ``MethodSpec``, in declaration order."""
    return list(_BY_NAME.values())


for _method in METHODS:
    declare(_method)
