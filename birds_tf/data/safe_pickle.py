"""Read NumPy arrays from pickle files without running whatever else a pickle may ask for.

Unpickling executes any callable a file names, so package data is read with an unpickler that
resolves only the three globals a plain (non-object) ndarray pickle needs and refuses every other
one. The result is checked to be a numeric array, so an object array cannot smuggle objects in.
"""
import gzip
import pickle

import numpy as np

# (module, name) -> object. numpy 1.x pickles name `numpy.core`, numpy 2.x `numpy._core`.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
_NUMERIC_KINDS = "biuf"


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for something other than a numeric NumPy array."""


class _ArrayUnpickler(pickle.Unpickler):
    def __init__(self, file, source):
        super().__init__(file)
        self._source = source

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._source} asks the unpickler for {module}.{name}; only NumPy array "
                f"reconstruction ({', '.join(f'{m}.{n}' for m, n in _ALLOWED)}) is allowed, so "
                "the file was refused. Is it the file you meant to load?") from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self._source} uses persistent ids; refused.")


def load_array(path):
    """The numeric ndarray pickled (gzip-compressed when `path` ends in .gz) in `path`."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        value = _ArrayUnpickler(f, repr(str(path))).load()
    if not isinstance(value, np.ndarray) or value.dtype.kind not in _NUMERIC_KINDS:
        kind = type(value).__name__ if not isinstance(value, np.ndarray) else \
            f"an array of dtype {value.dtype}"
        raise UnsafePickleError(f"{str(path)!r} holds {kind}, not a numeric NumPy array; refused.")
    return value
