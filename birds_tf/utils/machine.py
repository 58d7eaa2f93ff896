"""Which CPU a run or a benchmark ran on.

The model name alone does not say it: two VMs both called "AMD EPYC" (one Zen 4 with AVX-512,
one with AVX2 only) ran the same training epoch 2.7-4x apart and take different oneDNN kernels,
hence different float sums. The flags below are the ones oneDNN's choice depends on.
"""

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
