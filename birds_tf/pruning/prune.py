"""``prune_low_magnitude`` and ``strip_pruning`` for Keras 3, with tfmot's arguments.

``prune_low_magnitude`` clones a Sequential or functional model (or converts one layer),
replacing every ``Dense``/``Conv2D`` by its pruned twin (``PrunedDense``/``PrunedConv2D``) with
the weights kept and an all-ones mask; like tfmot, the result is uncompiled. ``strip_pruning``
clones it back to plain Keras layers whose kernels hold the zeros.
"""
import abc
import functools

import keras
import numpy as np

from birds_tf.layers import init as init_lib
from birds_tf.layers.masked import MASKED_LAYER_TYPES, MaskedConv2D, MaskedDense
from birds_tf.layers.normalize import Normalize
from birds_tf.pruning import layers as layers_lib
from birds_tf.pruning.layers import PRUNED_LAYER_TYPES, PrunedConv2D, PrunedDense

L = keras.layers
_PRUNED_TWIN = {L.Dense: PrunedDense, L.Conv2D: PrunedConv2D, MaskedDense: PrunedDense,
                MaskedConv2D: PrunedConv2D}
# Layers that tfmot accepts but leaves dense (its registry maps them to no weights).
_KEPT = (L.InputLayer, L.BatchNormalization, L.LayerNormalization, L.GroupNormalization,
         L.DepthwiseConv2D, L.Normalization, L.Rescaling, Normalize)
# Layers tfmot would prune and birds_tf cannot yet; named in the error.
_TFMOT_ONLY = (L.Conv1D, L.Conv3D, L.Conv2DTranspose, L.Conv3DTranspose, L.SeparableConv1D,
               L.SeparableConv2D, L.Embedding, L.MultiHeadAttention, L.RNN)


class PruningPolicy(abc.ABC):
    """Which layers ``prune_low_magnitude`` prunes (tfmot's experimental ``PruningPolicy``).

    A layer for which ``allow_pruning`` is False is left as it is, so a policy is also the way to
    keep layer types birds_tf cannot prune inside a pruned model.
    """

    @abc.abstractmethod
    def allow_pruning(self, layer):
        """Whether ``layer`` should be pruned."""

    def ensure_model_supports_pruning(self, model):
        """Raise ``ValueError`` if the policy cannot apply to ``model``; default: accept."""


@functools.cache
def _functional_class():
    """Keras' class of functional models, found through the public API (the class itself is
    only exported under the private ``keras.src``, whose layout changes between releases)."""
    x = keras.Input((1,), name="birds_tf_probe")  # named: Keras' auto-name counters stay put
    return type(keras.Model(x, x, name="birds_tf_probe"))


def _is_functional(obj):
    return isinstance(obj, (keras.Sequential, _functional_class()))


def _walk(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model) and _is_functional(layer):
            yield from _walk(layer)


def pruned_layers(model):
    """The pruned layers of ``model`` (nested models included), in Keras' order."""
    if isinstance(model, PRUNED_LAYER_TYPES):
        return [model]
    net = getattr(model, "net", None)  # birds_tf.AdversarialModel and the like
    if net is not None and not getattr(model, "layers", None):
        model = net
    from birds_tf.sparsity.masks import masked_layers
    return [layer for layer in masked_layers(model) if isinstance(layer, PRUNED_LAYER_TYPES)]


def _layer_kind(layer):
    if isinstance(layer, PRUNED_LAYER_TYPES):
        return "pruned"
    if type(layer) in _PRUNED_TWIN:
        return "prunable"
    if isinstance(layer, keras.Model):
        return "model" if _is_functional(layer) else "unsupported"
    if isinstance(layer, _KEPT) or (layer.built and not layer.weights) or (
            not layer.built and not isinstance(layer, _TFMOT_ONLY)
            and type(layer).__module__.startswith("keras.")
            and not hasattr(layer, "kernel_size") and not hasattr(layer, "units")):
        return "kept"
    return "unsupported"


def _unsupported_message(layer):
    why = ("tfmot prunes its kernel but birds_tf.pruning prunes Dense and Conv2D kernels only"
           if isinstance(layer, _TFMOT_ONLY) else
           "it has weights and is not a layer type that can be pruned (Dense, Conv2D)")
    return (f"Layer {layer.name!r} ({type(layer).__name__}) cannot be pruned: {why}. Pass a "
            "pruning_policy whose allow_pruning() returns False for it to keep it dense, or "
            "prune chosen layers one by one with keras.models.clone_model(model, "
            "clone_function=...) and prune_low_magnitude(layer).")


def _check_model(model, pruning_policy, params):
    already, bad = [], []
    for layer in _walk(model):
        kind = _layer_kind(layer)
        if kind == "pruned":
            already.append(layer.name)
        elif kind == "prunable" and not (pruning_policy and
                                         not pruning_policy.allow_pruning(layer)):
            if isinstance(layer, L.Conv2D) and params["block_size"] != (1, 1) and \
                    not params["sparsity_m_by_n"]:
                raise ValueError(layers_lib.block_error(layer.name, params["block_size"]))
        elif kind == "unsupported" and not (pruning_policy and
                                            not pruning_policy.allow_pruning(layer)):
            bad.append(layer)
    if already:
        raise ValueError(f"The model is already pruned (layers {already} carry pruning); pruning "
                         "it again would reset their masks and steps. Call strip_pruning(model) "
                         "first to start over, or keep training the pruned model.")
    if bad:
        raise ValueError(_unsupported_message(bad[0]))


def _plain_weights(layer):
    """Weights of a Dense/Conv2D (masked: ``kernel * mask`` folded in), without the mask."""
    if isinstance(layer, MASKED_LAYER_TYPES):
        weights = [np.asarray(layer.effective_kernel())]
        if layer.use_bias:
            weights.append(np.asarray(layer.bias.numpy()))
        return weights
    return layer.get_weights()


def _pruned_twin(layer, params):
    config = layer.get_config()
    config.pop("lora_rank", None)
    config.pop("lora_alpha", None)
    for key in layers_lib.PRUNING_CONFIG_KEYS:
        config.pop(key, None)
    config.update(params)
    return _PRUNED_TWIN[type(layer)].from_config(config)


def _build_like(new, old):
    if not old.built or new.built:
        return
    kernel = old.kernel.shape
    if isinstance(new, PrunedDense):
        new.build((None, kernel[0]))
    else:
        channels = kernel[2] * new.groups
        new.build((None, None, None, channels) if new.data_format == "channels_last"
                  else (None, channels, None, None))


def _copy_into_pruned(new, old):
    if old.built:
        _build_like(new, old)
        new.kernel.assign(_plain_weights(old)[0])
        if old.use_bias:
            new.bias.assign(np.asarray(old.bias.numpy()))


def _clone(model, clone_layer, copy_weights):
    def clone_function(layer):
        if isinstance(layer, keras.Model) and _is_functional(layer):
            return _clone(layer, clone_layer, copy_weights)
        return clone_layer(layer)

    clone = keras.models.clone_model(model, clone_function=clone_function)
    for old, new in zip(model.layers, clone.layers):
        if isinstance(old, keras.Model) and _is_functional(old):
            continue
        copy_weights(new, old)
    return clone


def prune_low_magnitude(to_prune, pruning_schedule=None, block_size=(1, 1),
                        block_pooling_type="AVG", pruning_policy=None, sparsity_m_by_n=None,
                        **kwargs):
    """A copy of ``to_prune`` whose Dense/Conv2D kernels are pruned by magnitude during ``fit``.

    Train it with ``UpdatePruningStep()`` among the callbacks; the masks follow tfmot's
    ``prune_low_magnitude`` exactly (see ``tests/test_pruning_tfmot_parity.py``).

    Args:
      to_prune: a Sequential or functional ``keras.Model``, a single ``Dense``/``Conv2D`` layer,
        or a list of layers.
      pruning_schedule: ``ConstantSparsity`` or ``PolynomialDecay``; default
        ``ConstantSparsity(0.5, 0)`` as tfmot.
      block_size: ``(height, width)`` blocks pruned together; only rank-2 (Dense) kernels.
      block_pooling_type: ``"AVG"`` or ``"MAX"``, how a block's magnitudes are pooled.
      pruning_policy: a ``PruningPolicy``; layers it does not allow are left unpruned.
      sparsity_m_by_n: ``(m, n)``: ``m`` zeros in every ``n`` consecutive input channels, set
        once at the first training step (tfmot's structured sparsity, e.g. ``(2, 4)``); the
        schedule's sparsity is then not used.
      **kwargs: for a single layer, overrides of its config (e.g. ``name``); ignored otherwise.

    Returns:
      The pruned layer, list of layers or (uncompiled) model.
    """
    from birds_tf.pruning.schedules import ConstantSparsity, validate
    schedule = validate(pruning_schedule if pruning_schedule is not None
                        else ConstantSparsity(0.5, 0))
    block_size, block_pooling_type, sparsity_m_by_n = layers_lib.check_pruning_args(
        block_size, block_pooling_type, sparsity_m_by_n)
    if pruning_policy is not None and not isinstance(pruning_policy, PruningPolicy):
        raise ValueError("pruning_policy must be a birds_tf.pruning.PruningPolicy, got "
                         f"{pruning_policy!r}.")
    params = {"pruning_schedule": schedule, "block_size": block_size,
              "block_pooling_type": block_pooling_type, "sparsity_m_by_n": sparsity_m_by_n}

    def prune_layer(layer):
        kind = _layer_kind(layer)
        if pruning_policy is not None and kind != "pruned" and \
                not pruning_policy.allow_pruning(layer):
            return layer.__class__.from_config(layer.get_config())
        if kind == "prunable":
            return _pruned_twin(layer, params)
        return layer.__class__.from_config(layer.get_config())

    def copy_weights(new, old):
        if isinstance(new, PRUNED_LAYER_TYPES):
            _copy_into_pruned(new, old)
        elif old.weights:
            new.set_weights(old.get_weights())

    if isinstance(to_prune, (list, tuple)):
        return [_prune_one(layer, params, kwargs) for layer in to_prune]
    if isinstance(to_prune, keras.Model):
        if not _is_functional(to_prune):
            raise ValueError("Subclassed models are not supported: prune_low_magnitude needs a "
                             f"Sequential or functional model, got {type(to_prune).__name__}. "
                             "Prune its layers with prune_low_magnitude(layer) where you build "
                             "them, or pass the functional model it wraps (e.g. model.net).")
        if pruning_policy is not None:
            pruning_policy.ensure_model_supports_pruning(to_prune)
        _check_model(to_prune, pruning_policy, params)
        return _clone(to_prune, prune_layer, copy_weights)
    if isinstance(to_prune, L.Layer):
        return _prune_one(to_prune, params, kwargs)
    raise ValueError("prune_low_magnitude can only prune a keras.Sequential or functional model, "
                     "a keras layer or a list of layers; got an object of type "
                     f"{type(to_prune).__name__}.")


def _prune_one(layer, params, overrides=None):
    kind = _layer_kind(layer)
    if kind == "pruned":
        raise ValueError(f"Layer {layer.name!r} is already pruned; pass the original layer, or "
                         "strip_pruning the model first.")
    if kind != "prunable":
        if kind == "kept":
            raise ValueError(f"Layer {layer.name!r} ({type(layer).__name__}) has no weights that "
                             "can be pruned; prune Dense and Conv2D layers.")
        raise ValueError(_unsupported_message(layer))
    new = _pruned_twin(layer, dict(params, **(overrides or {})))
    _copy_into_pruned(new, layer)
    return new


def _plain_config(layer):
    """The config of the plain Keras layer a pruned (or masked) one came from."""
    config = layer.get_config()
    for key in layers_lib.PRUNING_CONFIG_KEYS:
        config.pop(key, None)
    kernel_name, bias_name = getattr(layer, "_init_names", (None, None))
    if isinstance(kernel_name, str):
        config["kernel_initializer"] = keras.initializers.serialize(
            init_lib.kernel_initializer(kernel_name))
    if isinstance(bias_name, str):
        config["bias_initializer"] = keras.initializers.serialize(
            keras.initializers.get(layer.bias_initializer))
    return config


def strip_pruning(model):
    """A copy of ``model`` with every pruned layer back to a plain ``Dense``/``Conv2D`` whose
    kernel is ``kernel * mask`` -- what to export or save for deployment.

    Args:
      model: a Sequential or functional ``keras.Model`` returned by ``prune_low_magnitude``
        (other layers, birds_tf masked layers included, are copied as they are).
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"strip_pruning expects a keras.Model, got {type(model).__name__}.")
    if not _is_functional(model):
        raise ValueError("strip_pruning supports Sequential and functional models only, got "
                         f"{type(model).__name__}; strip the functional model inside it (e.g. "
                         "model.net).")

    def strip_layer(layer):
        if isinstance(layer, PrunedConv2D):
            return L.Conv2D.from_config(_plain_config(layer))
        if isinstance(layer, PrunedDense):
            return L.Dense.from_config(_plain_config(layer))
        return layer.__class__.from_config(layer.get_config())

    def copy_weights(new, old):
        if isinstance(old, PRUNED_LAYER_TYPES):
            new.set_weights(_plain_weights(old))
        elif old.weights:
            new.set_weights(old.get_weights())

    return _clone(model, strip_layer, copy_weights)


def prune_scope():
    """tfmot's ``prune_scope``: not needed here (the layers are registered), kept for ports."""
    return keras.saving.custom_object_scope(
        {"PrunedDense": PrunedDense, "PrunedConv2D": PrunedConv2D})


def pruning_summary(model):
    """``{layer name: {"sparsity", "threshold", "pruning_step", "zeros", "size"}}``."""
    out = {}
    for layer in pruned_layers(model):
        mask = np.asarray(layer.mask.numpy())
        out[layer.name] = {"sparsity": float(1.0 - mask.mean()),
                           "threshold": float(layer.threshold.numpy()),
                           "pruning_step": int(layer.pruning_step.numpy()),
                           "zeros": int(mask.size - np.count_nonzero(mask)),
                           "size": int(mask.size)}
    return out


def get_model_sparsity(model):
    """Fraction of pruned entries over all kernels being pruned in ``model``."""
    layers = pruned_layers(model)
    if not layers:
        raise ValueError("The model has no pruned layers; call prune_low_magnitude(model) first.")
    zeros = total = 0
    for layer in layers:
        mask = np.asarray(layer.mask.numpy())
        zeros += mask.size - np.count_nonzero(mask)
        total += mask.size
    return float(zeros / total)
