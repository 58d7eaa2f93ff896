"""Masks, layer-wise density budgets, magnitude and pruning-at-init scores.

tfmot's schedules and mask update live in ``birds_tf.pruning`` (``schedules``, ``masks``).
"""
from birds_tf.sparsity import distributions, magnitude, masks, scorers
from birds_tf.sparsity.distributions import (DISTRIBUTIONS, er, erk, igq, init_sparse,
                                             layer_densities, random_mask_arrays, random_masks,
                                             uniform)
from birds_tf.sparsity.magnitude import (global_magnitude_mask_arrays, global_magnitude_masks,
                                         hamming_distance, layerwise_magnitude_masks)
from birds_tf.sparsity.masks import (apply_mask, apply_masks, count_active, densities, get_masks,
                                     global_density, masked_layers, set_mask, set_masks,
                                     validate_density)
from birds_tf.sparsity.scorers import (SCORERS, grasp_scores, magnitude_scores, prune_at_init,
                                       random_scores, snip_scores, synflow_scores)

__all__ = [
    "distributions", "magnitude", "masks", "scorers",
    "DISTRIBUTIONS", "igq", "erk", "er", "uniform", "layer_densities", "random_masks",
    "random_mask_arrays", "init_sparse",
    "global_magnitude_masks", "global_magnitude_mask_arrays", "layerwise_magnitude_masks",
    "hamming_distance",
    "masked_layers", "densities", "global_density", "validate_density", "set_mask", "set_masks",
    "get_masks", "apply_mask", "apply_masks", "count_active",
    "SCORERS", "snip_scores", "grasp_scores", "synflow_scores", "magnitude_scores",
    "random_scores", "prune_at_init",
]
