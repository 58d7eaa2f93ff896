"""The suite stays quiet: birds-tf's saves raise no NumPy-2 warning, and pytest.ini makes a
warning raised in birds-tf's own modules an error."""
import warnings

import keras
import numpy as np
import pytest

from birds_tf.layers.masked import MaskedConv2D, MaskedDense
from birds_tf.utils import records

COPY_WARNING = "__array__ implementation doesn't accept a copy keyword"


def _saved_warnings(save):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save()
    return [str(w.message) for w in caught if COPY_WARNING in str(w.message)]


def _net(*layers):
    return keras.Sequential([keras.Input((6, 6, 1)), *layers])


def test_masked_layers_save_without_the_numpy_copy_warning(tmp_path):
    net = _net(MaskedConv2D(2, 3), keras.layers.Flatten(), MaskedDense(3))
    assert _saved_warnings(lambda: net.save(tmp_path / "masked.keras")) == []
    # the check can fail: a Keras layer saved the same way does warn (Keras 3.15)
    plain = _net(keras.layers.Conv2D(2, 3))
    assert _saved_warnings(lambda: plain.save(tmp_path / "plain.keras"))
    loaded = keras.models.load_model(tmp_path / "masked.keras")
    for a, b in zip(net.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_workdir_saves_are_quiet_with_keras_layers_inside(tmp_path):
    net = _net(MaskedConv2D(2, 3), keras.layers.BatchNormalization(), keras.layers.Flatten(),
               keras.layers.Dense(3))
    path = tmp_path / "final.keras"
    assert _saved_warnings(lambda: records.atomic_save_model(net, str(path))) == []
    assert path.exists() and not (tmp_path / ".tmp-final.keras").exists()


def _warn_from(module, category=UserWarning):
    code = compile("warnings.warn('probe', category)", "probe.py", "exec")
    exec(code, {"__name__": module, "warnings": warnings, "category": category})


def _under_ini_filters(config, module, category):
    """Warn from ``module`` under pytest.ini's filters alone (a ``-W`` on the command line
    would otherwise take precedence)."""
    from _pytest.config import parse_warning_filter
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        for line in config.getini("filterwarnings"):
            warnings.filterwarnings(*parse_warning_filter(line, escape=False))
        _warn_from(module, category)


@pytest.mark.parametrize("module", ["birds_tf", "birds_tf.sparsity.masks", "launch.train"])
@pytest.mark.parametrize("category", [UserWarning, DeprecationWarning, RuntimeWarning])
def test_a_warning_from_our_modules_is_an_error(pytestconfig, module, category):
    with pytest.raises(category, match="probe"):
        _under_ini_filters(pytestconfig, module, category)


@pytest.mark.parametrize("module", ["launchpad.x", "numpy.core", "keras.src.layers"])
def test_a_warning_from_elsewhere_stays_a_warning(pytestconfig, module):
    with pytest.warns(UserWarning, match="probe"):
        _under_ini_filters(pytestconfig, module, UserWarning)
