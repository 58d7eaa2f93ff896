"""Keras layers: masked conv/dense, the input normaliser and fused batch norm."""
from birds_tf.layers.batch_norm import BatchNormalization
from birds_tf.layers.masked import (MASKED_LAYER_TYPES, Conv2D, MaskedConv2D, MaskedDense,
                                    reuse_effective_kernels)
from birds_tf.layers.normalize import Normalize

__all__ = ["BatchNormalization", "Conv2D", "MaskedConv2D", "MaskedDense", "Normalize", "MASKED_LAYER_TYPES",
           "reuse_effective_kernels"]
