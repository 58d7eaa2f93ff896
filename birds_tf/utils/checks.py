"""The validators every layer shares, so a bad value reads the same wherever it is caught.

Why one module: the same "must be an integer >= 1" check was copied into five places and
drifted (``numpy`` integers accepted in some, not others); callers now name the value and the
bound and get one message form.
"""
import math
import numbers


def integer(name, value, minimum=1):
    """``int(value)`` after checking it is an integer (not a bool) ``>= minimum``.

    Args:
      name: the setting's name as the user binds it (it starts the error message).
      value: the value to check; Python and NumPy integers are accepted.
      minimum: the smallest allowed value.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def milestones(name, values, epochs, epochs_name):
    """Learning-rate milestones as a tuple of ints, each in ``1..epochs``.

    Args:
      name: what the milestones belong to (``'stage1'``, ``'Learning-rate'``).
      values: the milestones.
      epochs: the number of epochs they must fall in.
      epochs_name: the setting that holds ``epochs`` (named in the fix).
    """
    values = tuple(values)
    for m in values:
        if isinstance(m, bool) or not isinstance(m, numbers.Integral) or not 0 < m <= epochs:
            raise ValueError(f"{name} milestone {m!r} is outside 1..{epochs_name} ({epochs}); "
                             "drop it or raise the epochs.")
    return tuple(int(m) for m in values)


def finite_number(value):
    """True for an int or float (not a bool) that is neither inf nor NaN."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


def target_sparsity(config):
    """A sparse method's ``config.sparsity`` must be in (0, 1); the fix names the gin binding."""
    if not config.sparsity > 0:
        raise ValueError(f"Method {config.method!r} needs a target sparsity in (0, 1), got "
                         f"{config.sparsity!r}; set train_eval.sparsity (e.g. 0.8).")
    return float(config.sparsity)


def seed(value):
    """A random seed: an integer >= 0 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"seed must be a non-negative integer, got {value!r}.")
    return int(value)


def density(given, name="density"):
    """A kept fraction in (0, 1] as a float; anything else is a configuration error."""
    try:
        value = float(given)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in (0, 1], got {given!r}.") from None
    if not 0.0 < value <= 1.0 or math.isnan(value):
        raise ValueError(f"{name} must be in (0, 1] (1 = dense), got {given!r}.")
    return value
