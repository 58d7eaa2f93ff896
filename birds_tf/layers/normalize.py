"""Per-channel input standardisation as the model's first layer.

Keeping it inside the model means attacks, clipping and eps-balls all live in [0, 1] pixel
space, as in the reference code.
"""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="birds_tf")
class Normalize(keras.layers.Layer):
    def __init__(self, mean, std, **kwargs):
        super().__init__(**kwargs)
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean {self.mean} and std {self.std} must have the same length.")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}.")

    def call(self, x):
        mean = ops.cast(ops.convert_to_tensor(self.mean), x.dtype)
        std = ops.cast(ops.convert_to_tensor(self.std), x.dtype)
        return (x - mean) / std

    def get_config(self):
        config = super().get_config()
        config.update(mean=self.mean, std=self.std)
        return config
