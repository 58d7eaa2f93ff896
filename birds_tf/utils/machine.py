"""Which CPU a run or a benchmark ran on.

The model name alone does not say it: two VMs both called "AMD EPYC" (one Zen 4 with AVX-512,
one with AVX2 only) ran the same training epoch 2.7-4x apart and take different oneDNN kernels,
hence different float sums. The flags below are the ones oneDNN's choice depends on.

And whether TensorFlow uses oneDNN at all: TF 2.21 turns its oneDNN CPU kernels on by default
only where the CPU has AVX-512 VNNI or newer; on an AVX2-only x86 CPU it falls back to Eigen, and
our PreActResNet-18 w64 PGD-10 step took 36.99 s instead of 11.34 s with oneDNN (PyTorch, which
uses oneDNN there: 14.83-15.08 s; results/bench/pgd_at/). ``enable_onednn`` asks for oneDNN on every x86 CPU unless the user
chose (``TF_ENABLE_ONEDNN_OPTS=0`` keeps Eigen); it must run before TensorFlow is imported,
which is why ``import birds_tf`` calls it.
"""
import os
import platform
import sys

KERNEL_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The CPU features of ``KERNEL_FLAGS`` this machine has, sorted; [] where unreadable.

    Args:
      cpuinfo: the file to read (``/proc/cpuinfo``; a test passes its own).
    """
    try:
        with open(cpuinfo) as f:
            flags = set(f.read().split())
    except OSError:
        return []
    return sorted(flags & set(KERNEL_FLAGS))


def enable_onednn():
    """Set ``TF_ENABLE_ONEDNN_OPTS=1`` on x86 unless it is set or TensorFlow is already imported
    (it reads the variable once, at import; set afterwards it would only mislead a record).

    Returns:
      False when TensorFlow was imported first, so the call could not take effect.
    """
    if "tensorflow" in sys.modules:
        return False
    if platform.machine().lower() in ("x86_64", "amd64"):
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    return True
