"""Importing this module registers every gin configurable of the library."""
from birds_tf.training import experiment  # noqa: F401
