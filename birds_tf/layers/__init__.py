"""Keras layers: masked conv/dense and the input normaliser."""
from birds_tf.layers.masked import MASKED_LAYER_TYPES, MaskedConv2D, MaskedDense
from birds_tf.layers.normalize import Normalize

__all__ = ["MaskedConv2D", "MaskedDense", "Normalize", "MASKED_LAYER_TYPES"]
