"""Atomic writes: a crash mid-write must leave the previous file intact, never a torn one."""
import csv
import os
import tempfile


def atomic_write_text(path, text):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide results from other users
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_save_model(model, path):
    """``model.save`` to a temporary name in the same folder, then rename over ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, ".tmp-" + os.path.basename(path))
    model.save(tmp)
    os.replace(tmp, path)


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
