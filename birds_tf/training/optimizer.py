"""SGD with PyTorch semantics, and the per-epoch multi-step learning-rate schedule.

Keras' SGD decouples weight decay and folds the learning rate into the velocity; the reference
uses ``torch.optim.SGD``: ``buf = m*buf + (g + wd*w); w -= lr*buf``. The two differ after every
learning-rate drop, so results only match the paper's recipe with this optimizer.
"""
import keras
import numpy as np
from keras import ops

from birds_tf.utils.optimizer_slots import momentum_buffer  # noqa: F401 (re-export)


@keras.saving.register_keras_serializable(package="birds_tf")
class TorchSGD(keras.optimizers.Optimizer):
    """``torch.optim.SGD(lr, momentum, weight_decay)`` (dampening 0, no Nesterov)."""

    def __init__(self, learning_rate=0.1, momentum=0.9, l2=5e-4, name="torch_sgd", **kwargs):
        kwargs.pop("weight_decay", None)
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}.")
        if l2 < 0:
            raise ValueError(f"l2 (coupled weight decay) must be >= 0, got {l2!r}.")
        self.momentum = float(momentum)
        self.l2 = float(l2)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = [self.add_variable_from_reference(v, "momentum") for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        if self.l2:
            g = g + self.l2 * variable
        if self.momentum:
            buf = self.momentums[self._get_variable_index(variable)]
            self.assign(buf, self.momentum * buf + g)
            g = buf
        self.assign_sub(variable, lr * g)

    def get_config(self):
        config = super().get_config()
        config.update(momentum=self.momentum, l2=self.l2)
        return config


@keras.saving.register_keras_serializable(package="birds_tf")
class MultiStepLR(keras.optimizers.schedules.LearningRateSchedule):
    """``torch.optim.lr_scheduler.MultiStepLR`` stepped once per epoch.

    Derived from the optimizer's iteration counter, so a resumed run gets the right rate.
    """

    def __init__(self, base_lr, milestones, steps_per_epoch, gamma=0.1):
        self.base_lr = float(base_lr)
        self.milestones = sorted(int(m) for m in milestones)
        self.steps_per_epoch = int(steps_per_epoch)
        self.gamma = float(gamma)
        if self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch!r}.")

    def epoch_lr(self, epoch):
        return self.base_lr * self.gamma ** sum(1 for m in self.milestones if epoch >= m)

    def __call__(self, step):
        epoch = ops.floor_divide(ops.cast(step, "int64"), self.steps_per_epoch)
        lr = ops.convert_to_tensor(self.base_lr, "float32")
        for m in self.milestones:
            lr = ops.where(epoch >= m, lr * self.gamma, lr)
        return lr

    def get_config(self):
        return dict(base_lr=self.base_lr, milestones=self.milestones,
                    steps_per_epoch=self.steps_per_epoch, gamma=self.gamma)


def current_lr(optimizer):
    """The rate ``optimizer`` applies at its current iteration (its schedule evaluated there).

    Why here: Keras keeps the schedule call private (``_learning_rate``); one helper next to the
    optimizer is the only place that reaches for it.
    """
    lr = optimizer.learning_rate
    if callable(getattr(optimizer, "_learning_rate", None)):
        lr = optimizer._learning_rate(optimizer.iterations)
    return float(np.asarray(lr))
