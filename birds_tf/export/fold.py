"""Masks folded into the kernels: a copy of a masked net made of plain Keras layers.

Its own module because both the sparse export and the channel shrink need it.
"""
import keras
import numpy as np

from birds_tf.layers.masked import MASKED_LAYER_TYPES, Conv2D, MaskedConv2D, needs_subsampling

_PLAIN_INIT = {"kernel_initializer": "zeros", "bias_initializer": "zeros"}


def _plain_twin(layer):
    """A plain Keras layer with the masked layer's configuration (initializers are overwritten
    by the folded weights anyway, and birds_tf's named initializers would not deserialize)."""
    if not isinstance(layer, MASKED_LAYER_TYPES):
        return layer.__class__.from_config(layer.get_config())
    config = dict(layer.get_config(), **_PLAIN_INIT)
    for key in getattr(layer, "PRUNING_CONFIG_KEYS", ()):  # birds_tf.pruning's layers
        config.pop(key, None)
    if isinstance(layer, MaskedConv2D):
        # A strided 1x1 conv keeps the subsample + stride-1 form in the exported graph, so
        # attacking the SavedModel (input gradients) cannot hit oneDNN's odd-batch crash.
        cls = Conv2D if needs_subsampling(layer) else keras.layers.Conv2D
    else:
        cls = keras.layers.Dense
    return cls.from_config(config)


def fold_masks(net):
    """A copy of ``net`` with plain layers whose kernels are ``kernel * mask``."""
    plain = keras.models.clone_model(net, clone_function=_plain_twin)
    for layer in net.layers:
        if not layer.weights:  # input layers may be renamed by clone_model; nothing to copy
            continue
        twin = plain.get_layer(layer.name)
        if isinstance(layer, MASKED_LAYER_TYPES):
            weights = [np.asarray(layer.effective_kernel())]
            if layer.use_bias:
                weights.append(np.asarray(layer.bias.numpy()))
            twin.set_weights(weights)
        else:
            twin.set_weights(layer.get_weights())
    return plain
