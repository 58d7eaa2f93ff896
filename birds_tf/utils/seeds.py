"""Per-layer random streams that are the same in every process.

Why: masks drawn per layer must not depend on the layer order or on Python's salted ``hash()``,
so a layer's stream is keyed by the run's seed and a CRC of the layer's name.
"""
import zlib


def layer_seed(seed, name):
    """A ``numpy.random.default_rng`` seed for layer ``name`` under the run's ``seed``."""
    return [int(seed), zlib.crc32(str(name).encode("utf-8"))]
