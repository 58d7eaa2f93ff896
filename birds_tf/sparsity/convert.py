"""Bring your own model: swap every ``Conv2D``/``Dense`` of a functional or sequential Keras
model for its masked twin, keeping weights, so birds-tf's sparsity tools apply to it."""
import keras
import numpy as np

from birds_tf.layers import MaskedConv2D, MaskedDense

_TWINS = ((keras.layers.Conv2D, MaskedConv2D), (keras.layers.Dense, MaskedDense))


def _twin(layer):
    for plain, masked in _TWINS:
        if type(layer) is plain:
            config = layer.get_config()
            config.pop("lora_rank", None)
            config.pop("lora_alpha", None)
            return masked.from_config(config)
    return layer.__class__.from_config(layer.get_config())


def sparsify(model):
    """A clone of ``model`` whose conv/dense kernels carry masks (all ones), weights copied.

    Layers that are already masked (a model from ``birds_tf.models`` or an earlier
    ``sparsify``) are cloned with their kernel *and mask* unchanged, so calling it twice, or on a
    partly masked model, is safe and never resets a mask.

    Args:
      model: a functional or Sequential Keras model (subclassed models cannot be cloned); it is
        left unchanged. Every ``Conv2D`` and ``Dense`` becomes its masked twin.

    Returns:
      The masked clone, ready for ``init_sparse`` or ``AdversarialModel``.
    """
    if not isinstance(model, (keras.Sequential, keras.Model)) or not hasattr(model, "inputs") \
            or model.inputs is None:
        raise ValueError("sparsify() needs a functional or Sequential Keras model (subclassed "
                         f"models cannot be cloned); got {type(model).__name__}.")
    clone = keras.models.clone_model(model, clone_function=_twin)
    for old, new in zip(model.layers, clone.layers):
        weights = old.get_weights()
        if isinstance(new, (MaskedConv2D, MaskedDense)) and \
                not isinstance(old, (MaskedConv2D, MaskedDense)):
            weights = weights + [np.ones(new.mask.shape, "float32")]
        new.set_weights(weights)
    return clone
