"""Test set-up: quiet TF, two logical CPU devices for MirroredStrategy tests, fixed seeds."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as `import birds_tf` sets it: the kernels users run

import gc  # noqa: E402

import pytest  # noqa: E402


def _start_tensorflow():
    """Import TF and make two logical CPUs with stderr held at the fd level: TF's C++ start-up
    lines ignore TF_CPP_MIN_LOG_LEVEL (launch/quiet.py says why), and pytest-xdist's workers
    load this file before pytest captures their output. Replayed if the start fails."""
    from launch.quiet import held_stderr
    with held_stderr():
        import tensorflow as tf
        cpus = tf.config.list_physical_devices("CPU")
        try:
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
        except RuntimeError:  # already initialised by an earlier import
            pass
        tf.config.list_logical_devices()
    return tf


tf = _start_tensorflow()

import keras  # noqa: E402

gc.freeze()  # TensorFlow's and Keras' import-time objects: never garbage


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    yield
    keras.backend.clear_session()  # its full gc.collect frees this test's garbage, then
    gc.freeze()  # the survivors leave the collector's view: the next test's collection scans only
    # what it allocates (0.4-2.5 s a test otherwise, a third of the suite's time, with TF loaded)


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
