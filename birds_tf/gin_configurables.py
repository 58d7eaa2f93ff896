"""Importing this module registers every gin configurable and method plug-in of the library."""
from birds_tf.sparsity import dynamic  # noqa: F401
from birds_tf.training import experiment, flying_bird, flying_bird_channel  # noqa: F401
from birds_tf.training import iwi, robust_bird, static_pruning  # noqa: F401
from birds_tf.training import distillation, swa  # noqa: F401  (KnowledgeDistillation, SWA)
