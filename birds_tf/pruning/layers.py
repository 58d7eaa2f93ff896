"""Dense and Conv2D layers being pruned the way tfmot's ``PruneLowMagnitude`` wrapper prunes.

They are birds_tf masked layers (so masks, FLOPs, export and ``tf.distribute`` handling apply)
that also carry the pruning configuration, a ``threshold`` and a ``pruning_step``, all saved
with the model. tfmot's semantics are kept where they show in the weights:

* the forward pass sees ``kernel * mask`` but the gradient reaches every kernel entry
  (straight-through), as in tfmot, whose forward reads the kernel variable after it was
  overwritten with ``kernel * mask``; pruned entries therefore move during a step and can win
  back their place at the next mask update;
* ``UpdatePruningStep`` (the callback) advances ``pruning_step`` before each training batch,
  recomputes the mask from the raw kernel when the schedule says so, then zeroes the pruned
  kernel entries -- tfmot's ``increment -> conditional_mask_update -> weight_mask_op`` order.
"""
import keras
import numpy as np
from keras import ops

from birds_tf.layers import masked as masked_lib
from birds_tf.layers.masked import MaskedConv2D, MaskedDense
from birds_tf.pruning import masks as masks_lib
from birds_tf.pruning import schedules as schedules_lib

NO_CALLBACK_MESSAGE = ("A pruned layer was called in training mode before UpdatePruningStep ran; "
                       "add birds_tf.pruning.UpdatePruningStep() to model.fit's callbacks.")
PRUNING_CONFIG_KEYS = ("pruning_schedule", "block_size", "block_pooling_type", "sparsity_m_by_n")


def _two_ints(value, name):
    """tfmot's ``convert_to_tuple_of_two_int``."""
    try:
        pair = tuple(value)
    except TypeError:
        pair = None
    if pair is None or len(pair) != 2 or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair):
        raise ValueError(f"The {name} argument must be a tuple/list of 2 integers, received "
                         f"{value!r}.")
    return tuple(int(v) for v in pair)


def check_pruning_args(block_size, block_pooling_type, sparsity_m_by_n):
    """Validated ``(block_size, block_pooling_type, sparsity_m_by_n)``."""
    block_size = _two_ints(block_size, "block_size")
    if min(block_size) < 1:
        raise ValueError(f"block_size must hold positive integers, received {block_size}.")
    if block_pooling_type not in masks_lib.POOLING_TYPES:
        raise ValueError(f"Unsupported pooling type {block_pooling_type!r}. Should be 'AVG' or "
                         "'MAX'.")
    if sparsity_m_by_n:
        sparsity_m_by_n = _two_ints(sparsity_m_by_n, "sparsity_m_by_n")
        m, n = sparsity_m_by_n
        if not 0 < m < n:
            raise ValueError(f"sparsity_m_by_n={sparsity_m_by_n} means m zeros in every n "
                             "values and needs 0 < m < n, e.g. (2, 4).")
    else:
        sparsity_m_by_n = None
    return block_size, block_pooling_type, sparsity_m_by_n


def block_error(name, block_size):
    return (f"Block sparsity (block_size={tuple(block_size)}) can only be used for layers which "
            f"have 2-dimensional weights; layer {name!r} is a Conv2D (4-dimensional kernel). "
            "Prune it with block_size=(1, 1) (prune layers one by one), or leave it out with a "
            "pruning_policy.")


class _PrunedMixin:
    """Pruning configuration, state variables and the mask update shared by both layers."""

    PRUNING_CONFIG_KEYS = PRUNING_CONFIG_KEYS

    def _init_pruning(self, pruning_schedule, block_size, block_pooling_type, sparsity_m_by_n):
        self.pruning_schedule = schedules_lib.validate(schedules_lib.deserialize(
            pruning_schedule if pruning_schedule is not None
            else schedules_lib.ConstantSparsity(0.5, 0)))
        self.block_size, self.block_pooling_type, self.sparsity_m_by_n = check_pruning_args(
            block_size, block_pooling_type, sparsity_m_by_n)

    def _check_kernel_shape(self, shape):
        if self.sparsity_m_by_n:
            _, cols = masks_lib.m_by_n_groups(tuple(shape))
            m, n = self.sparsity_m_by_n
            if cols % n:
                raise ValueError(
                    f"sparsity_m_by_n={self.sparsity_m_by_n} on layer {self.name!r}: its input "
                    f"size ({cols}) is not a multiple of n={n}, so its last group of {n} would "
                    "be partial. Give the layer a multiple of n inputs, or leave it out with a "
                    "pruning_policy.")
        elif self.block_size != (1, 1) and len(shape) != 2:
            raise ValueError(block_error(self.name, self.block_size))

    def _add_pruning_variables(self):
        self.threshold = self.add_weight(name="threshold", shape=(), initializer="zeros",
                                         trainable=False, aggregation="only_first_replica")
        self.pruning_step = self.add_weight(
            name="pruning_step", shape=(), dtype="int64",
            initializer=keras.initializers.Constant(-1), trainable=False,
            aggregation="only_first_replica")

    def _masked(self, kernel):
        # Value kernel * mask, gradient to every entry (tfmot's straight-through).
        mask = ops.cast(self.mask, kernel.dtype)
        eff = kernel + ops.stop_gradient(kernel * mask - kernel)
        store = getattr(masked_lib._CAPTURE, "store", None)
        if store is not None:
            store[id(self)] = eff
        return eff

    def _assert_step(self, training):
        # Checked in Python when the training step is traced (no graph assert: XLA drops those),
        # after UpdatePruningStep.on_train_begin has marked the layer.
        if training is True and not getattr(self, "_pruning_driven", False):
            raise ValueError(NO_CALLBACK_MESSAGE)

    # -- what UpdatePruningStep calls ----------------------------------------------------------
    def should_update_mask(self, step):
        return masks_lib.is_due(self.pruning_schedule, step, self.sparsity_m_by_n)

    def new_mask(self, step):
        """``(threshold, mask)`` from the raw kernel, tfmot's ``_maybe_update_block_mask``."""
        return masks_lib.new_mask(np.asarray(self.kernel.numpy()), self.pruning_schedule, step,
                                  self.block_size, self.block_pooling_type, self.sparsity_m_by_n)

    def prune_step(self, step):
        """Set ``pruning_step``, update the mask if due, zero pruned kernel entries.

        Returns whether the mask was recomputed."""
        self.pruning_step.assign(np.int64(step))
        updated = self.should_update_mask(step)
        if updated:
            threshold, mask = self.new_mask(step)
            self.threshold.assign(np.float32(threshold))
            self.mask.assign(mask.astype(np.float32))
        self.remask()
        return updated

    def remask(self):
        """``kernel <- kernel * mask`` (tfmot's ``weight_mask_op``)."""
        self.kernel.assign(self.kernel * ops.cast(self.mask, self.kernel.dtype))

    def sparsity(self):
        mask = np.asarray(self.mask.numpy())
        return float(1.0 - mask.mean())

    def _pruning_config(self, config):
        config.update(pruning_schedule=schedules_lib.serialize(self.pruning_schedule),
                      block_size=list(self.block_size),
                      block_pooling_type=self.block_pooling_type,
                      sparsity_m_by_n=list(self.sparsity_m_by_n) if self.sparsity_m_by_n
                      else None)
        return config


@keras.saving.register_keras_serializable(package="birds_tf")
class PrunedDense(_PrunedMixin, MaskedDense):
    """``Dense`` pruned by magnitude on a tfmot schedule (see ``prune_low_magnitude``)."""

    def __init__(self, units, pruning_schedule=None, block_size=(1, 1),
                 block_pooling_type="AVG", sparsity_m_by_n=None, **kwargs):
        super().__init__(units, **kwargs)
        self._init_pruning(pruning_schedule, block_size, block_pooling_type, sparsity_m_by_n)

    def build(self, input_shape):
        self._check_kernel_shape((input_shape[-1], self.units))
        super().build(input_shape)
        self._add_pruning_variables()

    def call(self, inputs, training=None):
        self._assert_step(training)
        return super().call(inputs, training=training)

    def get_config(self):
        return self._pruning_config(super().get_config())


@keras.saving.register_keras_serializable(package="birds_tf")
class PrunedConv2D(_PrunedMixin, MaskedConv2D):
    """``Conv2D`` pruned by magnitude on a tfmot schedule (see ``prune_low_magnitude``)."""

    def __init__(self, filters, kernel_size, pruning_schedule=None, block_size=(1, 1),
                 block_pooling_type="AVG", sparsity_m_by_n=None, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        self._init_pruning(pruning_schedule, block_size, block_pooling_type, sparsity_m_by_n)
        if not self.sparsity_m_by_n:
            self._check_kernel_shape((*self.kernel_size, None, filters))  # rank 4: no blocks

    def build(self, input_shape):
        channels = input_shape[-1] if self.data_format == "channels_last" else input_shape[1]
        self._check_kernel_shape((*self.kernel_size, channels // self.groups, self.filters))
        super().build(input_shape)
        self._add_pruning_variables()

    def call(self, inputs, training=None):
        self._assert_step(training)
        return super().call(inputs)

    def get_config(self):
        return self._pruning_config(super().get_config())


PRUNED_LAYER_TYPES = (PrunedConv2D, PrunedDense)
