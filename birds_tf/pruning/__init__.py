"""Magnitude pruning with tfmot's API for Keras 3 models (tfmot 0.8.1 cannot wrap them).

Porting from ``tensorflow_model_optimization`` is a change of import::

    from birds_tf import pruning                     # was: tfmot.sparsity.keras
    model = pruning.prune_low_magnitude(model, pruning_schedule=pruning.PolynomialDecay(
        initial_sparsity=0.5, final_sparsity=0.8, begin_step=0, end_step=end_step))
    model.compile(...)
    model.fit(..., callbacks=[pruning.UpdatePruningStep(), pruning.PruningSummaries(logdir)])
    plain = pruning.strip_pruning(model)

Masks, thresholds and their timing match tfmot's at every step (constant, polynomial, block and
m-by-n); see docs/pruning.md, "Differences that remain", for what still differs.
"""
from birds_tf.pruning import masks
from birds_tf.pruning.callbacks import PruningSummaries, UpdatePruningStep
from birds_tf.pruning.layers import PRUNED_LAYER_TYPES, PrunedConv2D, PrunedDense
from birds_tf.pruning.prune import (PruningPolicy, get_model_sparsity, prune_low_magnitude,
                                    prune_scope, pruned_layers, pruning_summary, strip_pruning)
from birds_tf.pruning.schedules import ConstantSparsity, PolynomialDecay, PruningSchedule

__all__ = ["prune_low_magnitude", "strip_pruning", "ConstantSparsity", "PolynomialDecay",
           "PruningSchedule", "UpdatePruningStep", "PruningSummaries", "PruningPolicy",
           "get_model_sparsity", "pruning_summary", "pruned_layers", "prune_scope",
           "PrunedDense", "PrunedConv2D", "PRUNED_LAYER_TYPES", "masks"]
