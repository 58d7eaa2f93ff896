"""Robust evaluation of a trained workdir or SavedModel under a list of attacks, as a report.

``python -m launch.evaluate`` is the command line; these are the same steps as functions.
"""
from birds_tf.evaluation.robustness import (DEFAULT_ATTACKS, SavedModelClassifier, describe,
                                            evaluate, evaluate_path, format_table,
                                            load_classifier, load_npz, load_split, model_kind)

__all__ = ["DEFAULT_ATTACKS", "SavedModelClassifier", "describe", "evaluate", "evaluate_path",
           "format_table", "load_classifier", "load_npz", "load_split", "model_kind"]
