"""Speed benchmarks: our PGD-AT step side by side with the PyTorch reference (``make bench``).

Importing the package asks TensorFlow for its oneDNN kernels on every x86 CPU before a bench
imports it, as ``import birds_tf`` does (birds_tf.utils.machine says why)."""
from birds_tf.utils import machine as _machine

_machine.enable_onednn()
