"""Importing this module registers every gin configurable and method plug-in of the library.

The plug-in modules come from the method declarations (``birds_tf.metrics.methods``); the rest
are the experiment layer's other gin homes (KD/SWA, ``train_eval``).
"""
import importlib

from birds_tf.experiment import method as _method
from birds_tf.experiment import smoothing, train_eval  # noqa: F401 (KD, SWA; train_eval)

for _module in _method.plugin_modules():
    importlib.import_module(_module)
