"""``UpdatePruningStep`` and ``PruningSummaries``, the callbacks tfmot's pruning needs.

tfmot advances a pruned layer's step and updates its mask inside the layer's training call; here
the callback does it before each training batch, in cross-replica context, so it works under
``tf.distribute`` strategies and counts batches (not forward passes: an adversarial training step
calls the network once per attack iteration, and tfmot would count each).
"""
import keras
import numpy as np
import tensorflow as tf

from birds_tf.pruning.prune import pruned_layers


def _iterations(model):
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return 0
    return int(np.asarray(getattr(optimizer, "inner_optimizer", optimizer).iterations))


class UpdatePruningStep(keras.callbacks.Callback):
    """Advance every pruned layer's ``pruning_step`` and apply tfmot's mask update each batch.

    A model trained without it raises at its first training step, as in tfmot. A freshly pruned
    model starts at step 0 (the first batch is step 1); a reloaded one continues from its saved
    step.
    """

    def __init__(self):
        super().__init__()
        self.prunable_layers = []
        self.updates = []  # (step, layer name) of every mask recomputation

    def on_train_begin(self, logs=None):
        self.prunable_layers = pruned_layers(self.model)
        if not self.prunable_layers:
            raise ValueError("UpdatePruningStep found no pruned layers in the model; prune it "
                             "with birds_tf.pruning.prune_low_magnitude(model) first.")
        steps = getattr(self.model, "steps_per_execution", 1)
        steps = int(np.asarray(steps.numpy() if hasattr(steps, "numpy") else steps))
        if steps != 1:
            raise ValueError(f"UpdatePruningStep needs steps_per_execution=1 (got {steps}): the "
                             "masks are updated between batches. Compile the model with "
                             "steps_per_execution=1.")
        for layer in self.prunable_layers:
            layer._pruning_driven = True
            if int(layer.pruning_step.numpy()) == -1:
                layer.pruning_step.assign(np.int64(0))

    def on_train_batch_begin(self, batch, logs=None):
        for layer in self.prunable_layers:
            step = int(layer.pruning_step.numpy()) + 1
            if layer.prune_step(step):
                self.updates.append((step, layer.name))

    def on_epoch_end(self, epoch, logs=None):
        # Re-zero pruned entries that the last optimizer step moved, so saved weights are sparse.
        for layer in self.prunable_layers:
            layer.remask()

    def on_train_end(self, logs=None):
        self.on_epoch_end(None)


class PruningSummaries(keras.callbacks.TensorBoard):
    """TensorBoard logging plus per-layer ``<layer>/sparsity`` and ``<layer>/threshold`` scalars
    (and the scheduled ``<layer>/target_sparsity``) in ``log_dir/metrics``, at the start of each
    epoch (as tfmot) and at the end of training, against the optimizer's iteration count.

    Args:
      log_dir: a non-empty folder name.
      update_freq: passed to ``keras.callbacks.TensorBoard``.
    """

    def __init__(self, log_dir, update_freq="epoch", **kwargs):
        if not isinstance(log_dir, str) or not log_dir:
            raise ValueError(f"`log_dir` must be a non-empty string. You passed `log_dir`="
                             f"{log_dir!r}.")
        super().__init__(log_dir=log_dir, update_freq=update_freq, **kwargs)
        self._pruning_writer = tf.summary.create_file_writer(self.log_dir + "/metrics")

    def _log_pruning(self):
        step = _iterations(self.model)
        with self._pruning_writer.as_default():
            for layer in pruned_layers(self.model):
                mask = np.asarray(layer.mask.numpy())
                tf.summary.scalar(f"{layer.name}/sparsity", float(1.0 - mask.mean()), step=step)
                tf.summary.scalar(f"{layer.name}/threshold", float(layer.threshold.numpy()),
                                  step=step)
                layer_step = max(int(layer.pruning_step.numpy()), 0)
                tf.summary.scalar(f"{layer.name}/target_sparsity",
                                  float(layer.pruning_schedule(layer_step)[1]), step=step)
        self._pruning_writer.flush()

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self._log_pruning()

    def on_train_end(self, logs=None):
        self._log_pruning()
        super().on_train_end(logs)
