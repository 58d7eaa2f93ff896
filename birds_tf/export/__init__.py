"""Deploying a trained sparse model: masks folded into plain Keras layers, a SavedModel with a
``serve`` signature on [0, 1] images, and a compressed sparse copy of the weights."""
from birds_tf.export.sparse import (export_workdir, fold_masks, load_sparse_weights,
                                    save_sparse_weights)

__all__ = ["export_workdir", "fold_masks", "load_sparse_weights", "save_sparse_weights"]
