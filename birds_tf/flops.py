"""``birds_tf.flops.count(model)`` and friends: the public face of
``birds_tf.metrics.flop_count``."""
from birds_tf.metrics.flop_count import (CONVENTION, Count, LayerCount, count,  # noqa: F401
                                         inference_ratio, macs_at, paper_training_flops,
                                         results_fields, training_flops)

__all__ = ["CONVENTION", "Count", "LayerCount", "count", "inference_ratio", "macs_at",
           "paper_training_flops", "results_fields", "training_flops"]
