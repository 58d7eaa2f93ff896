"""Conv and dense layers that carry a binary mask on their kernel.

The forward pass uses ``kernel * mask`` so pruned weights contribute nothing and receive a zero
gradient. The mask is a non-trainable weight created with ``aggregation="only_first_replica"``:
assigned from a callback in cross-replica context it updates every replica identically
(see the Keras 3 notes), and it is saved with the model.
"""
import math
import threading

import keras
from keras import ops

from birds_tf.layers import init as init_lib


# Per-thread capture of effective kernels: MirroredStrategy traces each replica in its own thread,
# so a plain attribute on the shared layer would mix replicas.
_CAPTURE = threading.local()


class capture_effective_kernels:
    """Within this context, masked layers record ``kernel * mask`` tensors, keyed by layer id.

    A training step uses it around its final forward pass to take the *dense* gradient (at every
    position, pruned or not) from the same backward pass, which gradient-based growth needs.
    """

    def __enter__(self):
        self.kernels = {}
        self._previous = getattr(_CAPTURE, "store", None)
        _CAPTURE.store = self.kernels
        return self.kernels

    def __exit__(self, *exc):
        _CAPTURE.store = self._previous
        return False


class _MaskedMixin:
    """Mask creation, named initializers and the dense-gradient hook shared by both layers."""

    def _setup_inits(self, kernel_initializer, bias_initializer):
        self._init_names = (kernel_initializer, bias_initializer)
        return init_lib.kernel_initializer(kernel_initializer)

    def _build_mask(self, fan_in):
        # The bias bound depends on fan-in, known only now.
        self.bias_initializer = init_lib.bias_initializer(self._init_names[1], fan_in)

    def _add_mask(self):
        self.mask = self.add_weight(name="mask", shape=self.kernel.shape, initializer="ones",
                                    trainable=False, aggregation="only_first_replica")

    def effective_kernel(self):
        return self.kernel * ops.cast(self.mask, self.kernel.dtype)

    def _masked(self, kernel):
        eff = kernel * ops.cast(self.mask, kernel.dtype)
        store = getattr(_CAPTURE, "store", None)
        if store is not None:
            store[id(self)] = eff
        return eff

    # Keras' Conv/Dense save only kernel and bias; the generic Layer rule saves every variable
    # (the mask included) in creation order.
    def save_own_variables(self, store):
        keras.layers.Layer.save_own_variables(self, store)

    def load_own_variables(self, store):
        keras.layers.Layer.load_own_variables(self, store)

    def _named_inits(self, config):
        kernel_name, bias_name = self._init_names
        if isinstance(kernel_name, str):
            config["kernel_initializer"] = kernel_name
        if isinstance(bias_name, str):
            config["bias_initializer"] = bias_name
        return config


@keras.saving.register_keras_serializable(package="birds_tf")
class MaskedConv2D(_MaskedMixin, keras.layers.Conv2D):
    """``keras.layers.Conv2D`` whose kernel is multiplied by a 0/1 mask."""

    def __init__(self, filters, kernel_size, kernel_initializer="torch_default",
                 bias_initializer="torch_default", **kwargs):
        kinit = self._setup_inits(kernel_initializer, bias_initializer)
        super().__init__(filters, kernel_size, kernel_initializer=kinit, **kwargs)

    def build(self, input_shape):
        channels = input_shape[-1] if self.data_format == "channels_last" else input_shape[1]
        self._build_mask(math.prod(self.kernel_size) * channels // self.groups)
        super().build(input_shape)
        self._add_mask()

    def convolution_op(self, inputs, kernel):
        return super().convolution_op(inputs, self._masked(kernel))

    def get_config(self):
        return self._named_inits(super().get_config())


@keras.saving.register_keras_serializable(package="birds_tf")
class MaskedDense(_MaskedMixin, keras.layers.Dense):
    """``keras.layers.Dense`` whose kernel is multiplied by a 0/1 mask."""

    def __init__(self, units, kernel_initializer="torch_default",
                 bias_initializer="torch_default", **kwargs):
        kinit = self._setup_inits(kernel_initializer, bias_initializer)
        super().__init__(units, kernel_initializer=kinit, **kwargs)

    def build(self, input_shape):
        self._build_mask(input_shape[-1])
        super().build(input_shape)
        self._add_mask()

    def call(self, inputs, training=None):
        x = ops.matmul(inputs, self._masked(self.kernel))
        if self.bias is not None:
            x = ops.add(x, self.bias)
        if self.activation is not None:
            x = self.activation(x)
        return x

    def get_config(self):
        return self._named_inits(super().get_config())


MASKED_LAYER_TYPES = (MaskedConv2D, MaskedDense)
