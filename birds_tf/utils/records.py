"""The workdir's file formats: metrics CSV, JSON records, bit-packed mask files, atomic writes.

Why one module: every layer reads or writes these files (training writes them, metrics, plots,
evaluation and export read them), so they live at the bottom where all can import them. Every
write is atomic: a crash mid-write leaves the previous file intact, never a torn one.
"""
import contextlib
import csv
import errno
import importlib
import io
import json
import os
import re
import shutil
import tempfile
import warnings
import zipfile

import numpy as np

METRIC_COLUMNS = ("epoch", "lr", "train_loss", "train_ra", "val_sa", "val_ra", "val_robust_loss",
                  "test_sa", "test_ra", "test_robust_loss", "density", "seconds")


# sysexits.h EX_IOERR: an error while doing I/O.
DISK_FULL_EXIT_CODE = 74
_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """A write found no space left (or the quota spent); the previous file is intact."""

    exit_code = DISK_FULL_EXIT_CODE


def _size(n):
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} bytes"


def disk_full_error(path, needed=None):
    """The ``DiskFullError`` for ``path``: the space it needs (bytes) and what is free there."""
    try:
        free = shutil.disk_usage(os.path.dirname(os.path.abspath(path)) or ".").free
        free = f"{_size(free)} free there"
    except OSError:
        free = "the free space there is unknown"
    need = f"about {_size(needed)}" if needed else "more space"
    error = DiskFullError(
        f"No space left on the device writing {path}: it needs {need}, {free}. The previous "
        "version of the file is intact. Free space (or move the workdir to a larger disk), then "
        "rerun the same command: it resumes from the last completed epoch.")
    error.errno = errno.ENOSPC
    return error


def is_disk_full(error):
    return isinstance(error, OSError) and error.errno in _FULL


@contextlib.contextmanager
def _cleanup_on_error(tmp, path, needed):
    """Remove ``tmp`` on any error; an ENOSPC/EDQUOT becomes ``DiskFullError`` for ``path``."""
    try:
        yield
    except BaseException as e:
        partial = 0
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            partial = os.path.getsize(tmp)
            os.remove(tmp)
        if is_disk_full(e) and not isinstance(e, DiskFullError):
            needed = needed() if callable(needed) else needed
            raise disk_full_error(path, max(needed or 0, partial) or None) from e
        raise


def atomic_write_text(path, text):
    """``text`` to ``path`` via a temporary file and a rename: a crash or a full disk leaves the
    previous file whole (a full disk raises ``DiskFullError``)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide results from other users
    with _cleanup_on_error(tmp, path, len(text.encode())):
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


# NumPy 2's warning when an ``__array__`` takes no ``copy`` keyword, as Keras 3's variables do.
KERAS_VARIABLE_COPY_WARNING = r"__array__ implementation doesn't accept a copy keyword"


def atomic_save_model(model, path):
    """``model.save`` to a temporary name in the same folder, then rename over ``path``.

    Keras' own layers (BatchNormalization, Dense, ...) hand their variables to the writer, which
    converts each with ``np.array``; NumPy 2 then warns that the variable's ``__array__`` takes
    no ``copy`` keyword, once per variable per save (a Keras matter; the file is right). That
    one warning, raised in Keras' modules, is silenced around this save and nowhere else; our
    masked layers hand arrays (``layers/masked.py``) and raise none.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, ".tmp-" + os.path.basename(path))

    def needed():  # the last version's size, else the weights' bytes
        if os.path.exists(path):
            return os.path.getsize(path)
        return sum(int(getattr(w, "nbytes", 0) or 0) for w in model.weights) or None

    with _cleanup_on_error(tmp, path, needed), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=KERAS_VARIABLE_COPY_WARNING,
                                category=DeprecationWarning, module=r"keras\.")
        model.save(tmp)
        os.replace(tmp, path)


# A module a saved model's config names for one of its classes: a birds_tf module only.
_CLASS_MODULE = re.compile(r"birds_tf(\.[A-Za-z_][A-Za-z0-9_]*)+")


def import_saved_classes(path):
    """Import the birds_tf modules whose Keras classes the ``.keras`` file at ``path`` uses.

    Why: ``keras.models.load_model`` finds a registered class (``birds_tf>MaskedConv2D``) only
    once its module ran. The file names each class's module (its config's ``module`` field), so
    the bottom of the house loads exactly those, without importing the layers above it by name
    (``birds_tf.register_keras_objects`` imports a fixed list from the top). Returns their names.
    """
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    found, todo = set(), [config]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            module = node.get("module")
            if isinstance(module, str) and _CLASS_MODULE.fullmatch(module):
                found.add(module)
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    for module in sorted(found):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if not (error.name and (module + ".").startswith(error.name + ".")):
                raise  # a module it imports is missing, not the one the file names
            # Gone since the file was written: Keras' error names the class it cannot find.
    return sorted(found)


def load_model(path):
    """The Keras model saved at ``path`` (a ``.keras`` file), uncompiled, birds_tf's classes
    (masked layers, normaliser) imported first (``import_saved_classes``)."""
    import keras

    import_saved_classes(path)
    return keras.models.load_model(path, compile=False)


def write_json(path, payload):
    """``payload`` as indented, key-sorted JSON (NumPy scalars as floats), atomically."""
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=float))


def read_json(path):
    with open(path) as f:
        return json.load(f)


def write_rows_csv(path, rows, leading=()):
    """Rows of dicts to CSV (``leading`` columns first, then first-seen order), atomically."""
    columns = list(leading)
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    atomic_write_text(path, buffer.getvalue())


def write_metrics_csv(path, history):
    write_rows_csv(path, history, METRIC_COLUMNS)


def read_metrics_csv(path):
    """Rows of a ``metrics.csv``-style file: numbers as floats (``epoch`` as int), empty cells
    left out."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for row in rows:
        parsed = {}
        for key, value in row.items():
            if value == "":
                continue
            try:
                parsed[key] = float(value)
            except ValueError:
                parsed[key] = value
        if "epoch" in parsed:
            parsed["epoch"] = int(parsed["epoch"])
        out.append(parsed)
    return out


def save_mask_file(path, masks):
    """``{layer: 0/1 array}`` as a compressed npz of bit-packed masks (1 bit per weight)."""
    payload = {}
    for name, mask in masks.items():
        mask = np.asarray(mask)
        payload[name] = np.packbits(mask.reshape(-1) > 0)
        payload[name + ":shape"] = np.asarray(mask.shape, np.int64)
    tmp = path + ".tmp.npz"
    with _cleanup_on_error(tmp, path, sum(v.nbytes for v in payload.values())):
        np.savez_compressed(tmp, **payload)
        os.replace(tmp, path)


def load_mask_file(path):
    """The ``{layer: float32 0/1 array}`` written by ``save_mask_file``."""
    with np.load(path) as data:
        out = {}
        for key in data.files:
            if key.endswith(":shape"):
                continue
            shape = tuple(int(d) for d in data[key + ":shape"])
            bits = np.unpackbits(data[key], count=int(np.prod(shape)))
            out[key] = bits.reshape(shape).astype(np.float32)
    return out
