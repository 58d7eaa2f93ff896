"""Test set-up: quiet TF, two logical CPU devices for MirroredStrategy tests, fixed seeds."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:  # already initialised by an earlier import
    pass

import keras  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    yield
    keras.backend.clear_session()


@pytest.fixture
def two_cpus():
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(devices) < 2:
        pytest.skip("two logical CPU devices are not available")
    return devices[:2]


def mirrored(devices):
    """MirroredStrategy over the logical CPUs, reducing on one device.

    TF picks collective ops for CPU-only mirroring; once any collective in the process is
    aborted, every later one fails ("Restart your program to reset"), so one test's failure
    would cascade into the others. Reducing on one device keeps tests independent.
    """
    return tf.distribute.MirroredStrategy(
        devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
