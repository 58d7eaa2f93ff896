"""Keras layers: masked conv/dense and the input normaliser."""
from birds_tf.layers.masked import MASKED_LAYER_TYPES, Conv2D, MaskedConv2D, MaskedDense
from birds_tf.layers.normalize import Normalize

__all__ = ["Conv2D", "MaskedConv2D", "MaskedDense", "Normalize", "MASKED_LAYER_TYPES"]
