"""BatchNormalization through TensorFlow's fused kernel (``FusedBatchNormV3``).

Why: Keras 3 normalises with ``moments`` + ``batch_normalization``, a dozen element-wise and
reduction ops forward and backward. The fused kernel (oneDNN's batch norm on CPU, cuDNN's on
GPU) does the same arithmetic in one op each way; it cut the CPU time of a PGD-10 training step
by about 15% (BENCHMARKS.md). The function is unchanged: batch statistics with the biased
variance for normalising, and the moving statistics updated as Keras does (biased variance,
``momentum`` weighting), so weights, configs and checkpoints are the same as Keras' layer.
Inputs the kernel does not take (not 4-D channels-last, masks, renorm, no centre/scale,
synchronized) fall back to Keras' own implementation.
"""
import functools

import keras
import tensorflow as tf


@functools.lru_cache(maxsize=None)
def _gpu_visible():
    # Logical devices are fixed once TensorFlow initialises: ask once, not on every call.
    return bool(tf.config.list_logical_devices("GPU"))


def _native_bf16(inputs):
    """Whether to hand bfloat16 inputs to the kernel as they are: on CPU only (measured there;
    float16 on CPU is neither identical nor faster, so it is cast as before)."""
    return inputs.dtype == tf.bfloat16 and not _gpu_visible()


@keras.saving.register_keras_serializable(package="birds_tf")
class BatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` computed with the fused kernel where it applies."""

    def _fusable(self, inputs, mask):
        return (mask is None and not self.renorm and not self.synchronized and self.scale
                and self.center and inputs.shape.rank == 4 and self.axis in (-1, 3))

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        # As Keras does: statistics and normalisation in float32 (bf16/fp16 overflow otherwise).
        # The CPU kernel takes bfloat16 inputs and computes in float32 inside: the outputs,
        # statistics and gradients are bit-identical to casting first (tests/test_batch_norm.py),
        # without the two casts each way (22% of the BN time of a bf16 step).
        x = inputs if _native_bf16(inputs) else tf.cast(inputs, tf.float32)
        gamma = tf.cast(self.gamma, tf.float32)
        beta = tf.cast(self.beta, tf.float32)
        if training and self.trainable:
            y, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=gamma, offset=beta, mean=tf.zeros([0], tf.float32),
                variance=tf.zeros([0], tf.float32), epsilon=self.epsilon,
                exponential_avg_factor=1.0, data_format="NHWC", is_training=True)
            # The kernel returns the unbiased (Bessel-corrected) variance; Keras averages the
            # biased one into the moving variance.
            n = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), tf.float32)
            variance = variance * ((n - 1.0) / tf.maximum(n, 1.0))
            momentum = tf.cast(self.momentum, tf.float32)
            self.moving_mean.assign(
                tf.cast(self.moving_mean, tf.float32) * momentum + mean * (1.0 - momentum))
            self.moving_variance.assign(
                tf.cast(self.moving_variance, tf.float32) * momentum
                + variance * (1.0 - momentum))
        else:
            y, _, _, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=gamma, offset=beta, mean=tf.cast(self.moving_mean, tf.float32),
                variance=tf.cast(self.moving_variance, tf.float32), epsilon=self.epsilon,
                exponential_avg_factor=1.0, data_format="NHWC", is_training=False)
        return tf.cast(y, self.compute_dtype)
