"""Robust evaluation of a trained workdir or SavedModel under a list of attacks, as a report.

``python -m launch.evaluate`` is the command line; these are the same steps as functions:
``inputs`` (the arguments, checked first), ``loaders`` (the classifier and the examples),
``batched`` (attacks batch by batch), ``report`` (the report dict, its table and JSON file).
"""
from birds_tf.evaluation.inputs import DEFAULT_ATTACKS, model_kind
from birds_tf.evaluation.loaders import (SavedModelClassifier, describe, load_classifier,
                                         load_npz, load_split)
from birds_tf.evaluation.report import evaluate, evaluate_path, format_table

__all__ = ["DEFAULT_ATTACKS", "SavedModelClassifier", "describe", "evaluate", "evaluate_path",
           "format_table", "load_classifier", "load_npz", "load_split", "model_kind"]
