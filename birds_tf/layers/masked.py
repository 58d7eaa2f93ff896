"""Conv and dense layers that carry a binary mask on their kernel.

The forward pass uses ``kernel * mask`` so pruned weights contribute nothing and receive a zero
gradient. The mask is a non-trainable weight created with ``aggregation="only_first_replica"``:
assigned from a callback in cross-replica context it updates every replica identically
(see the Keras 3 notes), and it is saved with the model.
"""
import math
import threading
import types

import keras
from keras import ops

from birds_tf.layers import init as init_lib


# Per-thread capture of effective kernels: MirroredStrategy traces each replica in its own thread,
# so a plain attribute on the shared layer would mix replicas.
_CAPTURE = threading.local()


_REUSE = threading.local()


class reuse_effective_kernels:
    """Within this context, the masked layers of ``net`` use ``kernel * mask`` computed once.

    Why: an attack runs the network many times with the weights fixed (PGD-10: ten forward and
    input-gradient passes per training step, APGD: a hundred), and recomputing every masked
    kernel on each pass is pure overhead (about 3% of a PGD-10 step at width 64). The product is
    the one the layer computes (kernel cast to the layer's compute dtype, times the mask), so
    results are unchanged. Use it only where no gradient with respect to the kernels is taken
    from inside the context (attacks take input gradients only). ``net`` without Keras layers
    (a plain function) makes it a no-op. Nests; per thread, as replicas trace in their own.

    Args:
      net: the Keras model (or layer) whose masked layers reuse their effective kernels.
    """

    def __init__(self, net):
        self.net = net

    def __enter__(self):
        self._previous = getattr(_REUSE, "store", None)
        store = dict(self._previous or {})
        flatten = getattr(self.net, "_flatten_layers", None)
        for layer in (flatten(include_self=True) if flatten is not None else ()):
            if isinstance(layer, MASKED_LAYER_TYPES) and layer.built:
                dtype = layer.compute_dtype
                store[id(layer)] = (ops.cast(layer.kernel, dtype)
                                    * ops.cast(layer.mask, dtype))
        _REUSE.store = store
        return self

    def __exit__(self, *exc):
        _REUSE.store = self._previous
        return False


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


def needs_subsampling(layer):
    """Whether ``layer`` is a 1x1 convolution with a stride above 1.

    Why it matters: TensorFlow 2.21's oneDNN CPU kernel for the *filter* gradient of such a
    convolution corrupts the heap when the batch is odd (segfault, ``double free or corruption``)
    on AVX-512/AMX Xeons, and on an AVX2-only CPU with oneDNN (which birds-tf asks for:
    ``birds_tf.utils.machine``) it returns a wrong kernel gradient at any batch (off by ~700 on
    a 4x32x32x6 batch; outputs and bias gradient right). Taking every s-th pixel and convolving
    at stride 1 is the same function
    (a 1x1 kernel at stride s reads exactly pixels 0, s, 2s, ... under 'same' and 'valid'
    padding alike), and its gradients never call that kernel.
    """
    return (isinstance(layer, keras.layers.Conv2D) and tuple(layer.kernel_size) == (1, 1)
            and tuple(layer.strides) != (1, 1))


def subsample(layer, inputs):
    """``inputs`` reduced to the pixels a 1x1 kernel at ``layer.strides`` reads.

    With static spatial sizes and channels last, it is a reshape and a contiguous ``Slice``
    (whose gradient is a ``Pad``) rather than a strided slice: TensorFlow's CPU
    ``StridedSliceGrad`` is generic and slow (14 ms against 0.9 ms for forward + gradient of a
    32x32x32x64 batch on one core), which made the three shortcuts of PreActResNet-18 about 5%
    of a PGD-AT step.
    """
    sh, sw = layer.strides
    if layer.data_format == "channels_first":
        return inputs[:, :, ::sh, ::sw]
    _, h, w, c = inputs.shape
    if h is None or w is None or c is None:
        return inputs[:, ::sh, ::sw, :]
    ho, wo = -(-h // sh), -(-w // sw)
    if (ho * sh, wo * sw) != (h, w):
        # Zeros after the last row/column: the kernel reads rows 0, s, .., (ho - 1) s < h.
        inputs = ops.pad(inputs, [[0, 0], [0, ho * sh - h], [0, wo * sw - w], [0, 0]])
    # (b, ho, sh, wo, sw * c): pixel (i sh, j sw) is [:, i, 0, j, :c].
    grid = ops.reshape(inputs, (-1, ho, sh, wo, sw * c))
    picked = ops.slice(grid, (0, 0, 0, 0, 0), (ops.shape(grid)[0], ho, 1, wo, c))
    return ops.reshape(picked, (-1, ho, wo, c))


class _PointwiseStrideMixin:
    """Runs a strided 1x1 convolution as subsample + stride-1 convolution (see
    ``needs_subsampling``); every other convolution is unchanged."""

    def convolution_op(self, inputs, kernel):
        if not needs_subsampling(self):
            return super().convolution_op(inputs, kernel)
        return ops.conv(subsample(self, inputs), kernel, strides=1, padding=self.padding,
                        dilation_rate=self.dilation_rate, data_format=self.data_format)


def _subsampled_convolution_op(layer, inputs, kernel):
    return ops.conv(subsample(layer, inputs), kernel, strides=1, padding=layer.padding,
                    dilation_rate=layer.dilation_rate, data_format=layer.data_format)


def route_strided_pointwise(net):
    """Give a model's plain strided 1x1 ``keras.layers.Conv2D`` layers the subsample form.

    The same function (see ``needs_subsampling``), so a user's own model trains through odd
    batches too; only the instances' ``convolution_op`` is replaced (config, weights and
    serialization are untouched). Returns the names of the layers that were routed.
    """
    flatten = getattr(net, "_flatten_layers", None)
    if flatten is None:
        return []
    routed = []
    for layer in flatten(include_self=False):
        if needs_subsampling(layer) and not isinstance(layer, _PointwiseStrideMixin):
            if not getattr(layer, "_birds_tf_subsampled", False):
                object.__setattr__(layer, "convolution_op", types.MethodType(
                    _subsampled_convolution_op, layer))
                object.__setattr__(layer, "_birds_tf_subsampled", True)
            routed.append(layer.name)
    return routed


@keras.saving.register_keras_serializable(package="birds_tf")
class Conv2D(_PointwiseStrideMixin, keras.layers.Conv2D):
    """Plain ``keras.layers.Conv2D`` with the strided-1x1 crash workaround (for models built
    unmasked, e.g. the benchmarks' mask-overhead baseline)."""


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
        reused = getattr(_REUSE, "store", None)
        if reused is not None and id(self) in reused:
            return reused[id(self)]
        eff = kernel * ops.cast(self.mask, kernel.dtype)
        store = getattr(_CAPTURE, "store", None)
        if store is not None:
            store[id(self)] = eff
        return eff

    # Keras' Conv/Dense save only kernel and bias; the generic Layer rule saves every variable
    # (the mask included) in creation order. They go as NumPy arrays: the writer converts a
    # variable with ``np.array(variable)``, and a Keras 3 variable's ``__array__`` takes no
    # ``copy`` keyword, which NumPy 2 answers with a DeprecationWarning per variable per save.
    def save_own_variables(self, store):
        for i, variable in enumerate(self._trainable_variables + self._non_trainable_variables):
            store[str(i)] = variable.numpy()

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
class MaskedConv2D(_MaskedMixin, _PointwiseStrideMixin, keras.layers.Conv2D):
    """``keras.layers.Conv2D`` whose kernel is multiplied by a 0/1 mask (strided 1x1 kernels run
    as subsample + stride 1, see ``needs_subsampling``)."""

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
