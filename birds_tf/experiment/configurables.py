"""Importing this module registers every gin configurable and method plug-in of the library."""
from birds_tf.experiment import flying_bird, flying_bird_channel, iwi  # noqa: F401
from birds_tf.experiment import robust_bird, static_pruning  # noqa: F401
from birds_tf.experiment import smoothing, train_eval  # noqa: F401 (KD, SWA; train_eval)
