"""Keep TensorFlow's C++ start-up lines off the console of the launchers.

TensorFlow 2.21 logs through absl's C++ logger, which writes to stderr before
``absl::InitializeLog`` is called, so ``TF_CPP_MIN_LOG_LEVEL`` does not hide its start-up lines
(oneDNN, the CUDA probe and its "failed call to cuInit", which reads like a failure on every
machine without a GPU). ``start_tensorflow`` imports TensorFlow and Keras and creates the devices
with stderr captured at the file-descriptor level; the captured text is replayed if anything
fails there, or shown at ``--verbosity`` 0 and up or when ``BIRDS_TF_VERBOSE_STARTUP=1``.
Launchers call it after parsing their flags and before anything imports TensorFlow;
``TF_CPP_MIN_LOG_LEVEL`` (2 unless set, 0 when verbose) hides the C++ INFO and WARNING lines
that come after the start-up.
"""
import contextlib
import os
import sys
import tempfile


def start_tensorflow(verbosity=-1):
    """Import TensorFlow and Keras and initialise the devices quietly (no-op once imported).

    Args:
      verbosity: the launcher's ``--verbosity``; 0 and up shows the start-up lines.
    """
    verbose = int(verbosity) >= 0 or os.environ.get("BIRDS_TF_VERBOSE_STARTUP") == "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "2")
    if "tensorflow" in sys.modules or verbose:
        return
    with held_stderr():
        import keras  # noqa: F401
        import tensorflow as tf
        if "TF_CONFIG" not in os.environ:
            # Creating the devices prints the CUDA probe; skipped for multi-worker runs,
            # whose MultiWorkerMirroredStrategy must configure collectives before that.
            tf.config.list_logical_devices()


@contextlib.contextmanager
def held_stderr():
    """Hold everything written to file descriptor 2 (C++ included) while the block runs; replay
    it if the block raises. Used around TensorFlow's start (here and in tests/conftest.py)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
