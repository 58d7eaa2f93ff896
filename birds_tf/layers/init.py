"""Weight initializers by name, so configs can say which framework's defaults a model uses.

``torch_default`` reproduces PyTorch's ``kaiming_uniform(a=sqrt(5))``: U(+-1/sqrt(fan_in)) for
conv and dense kernels, and the same bound for biases (applied at build time, when fan-in is
known). ``kaiming_normal_fan_out`` is WRN's own conv init; ``keras_default`` is Glorot uniform.
"""
import keras

KERNEL_INITS = ("torch_default", "kaiming_normal_fan_out", "keras_default")
BIAS_INITS = ("torch_default", "zeros")


def kernel_initializer(name):
    if not isinstance(name, str):
        return name
    if name == "torch_default":
        return keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")
    if name == "kaiming_normal_fan_out":
        return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")
    if name == "keras_default":
        return keras.initializers.GlorotUniform()
    if name in ("zeros", "ones", "glorot_uniform", "he_normal", "he_uniform"):
        return keras.initializers.get(name)
    raise ValueError(f"Unknown kernel initializer {name!r}; allowed: {KERNEL_INITS}.")


def bias_initializer(name, fan_in):
    """The bias initializer for a layer whose kernel has ``fan_in`` inputs per output."""
    if not isinstance(name, str):
        return name
    if name == "torch_default":
        bound = 1.0 / (fan_in ** 0.5) if fan_in > 0 else 0.0
        return keras.initializers.RandomUniform(-bound, bound)
    if name in ("zeros", "keras_default"):
        return keras.initializers.Zeros()
    raise ValueError(f"Unknown bias initializer {name!r}; allowed: {BIAS_INITS}.")
