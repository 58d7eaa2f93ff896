"""The launchers (absl mains). Importing the package asks TensorFlow for its oneDNN kernels on
every x86 CPU before any launcher imports it (birds_tf.utils.machine says why)."""
from birds_tf.utils import machine as _machine

_machine.enable_onednn()
