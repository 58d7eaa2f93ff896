"""The architectures of the paper, every conv and dense kernel masked."""
from birds_tf.models.registry import DATASET_STATS, build, names

__all__ = ["build", "names", "DATASET_STATS"]
