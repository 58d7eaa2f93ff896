"""Reading a finished ``launch.train`` workdir: results, metrics, config, models, masks, data.

Why: the report, the figures and the exporter all start from a workdir path given on a command
line, and must fail with the path in the message when it is not one.
"""
import ast
import dataclasses
import glob
import json
import os
import re


class NotAWorkdirError(ValueError):
    """The path is not a finished workdir of ``launch.train``."""


def check(workdir, need=("results.json",)):
    """``workdir`` as a string, after checking it exists and holds the files in ``need``."""
    workdir = os.fspath(workdir)
    if not os.path.isdir(workdir):
        raise NotAWorkdirError(f"{workdir!r} is not a workdir: no such directory.")
    for name in need:
        if not os.path.exists(os.path.join(workdir, name)):
            raise NotAWorkdirError(
                f"{workdir!r} is not a finished launch.train workdir: it has no {name} "
                "(train into it with python -m launch.train --workdir=...).")
    return workdir


def results(workdir):
    with open(os.path.join(check(workdir), "results.json")) as f:
        out = json.load(f)
    out.setdefault("workdir", os.fspath(workdir))
    return out


def history(workdir):
    from birds_tf.utils.files import read_metrics_csv
    return read_metrics_csv(os.path.join(check(workdir, ("metrics.csv",)), "metrics.csv"))


def label(workdir, res=None):
    """A legend label: the paper's method name and the target sparsity."""
    from birds_tf.metrics.table import METHOD_NAMES
    res = res or results(workdir)
    name = METHOD_NAMES.get(res.get("method"), res.get("method", os.path.basename(workdir)))
    sparsity = float(res.get("target_sparsity") or 0.0)
    return f"{name} ({100 * sparsity:.0f}%)" if sparsity else name


def _statements(text):
    """``key = value`` statements of a gin file, continuation lines joined."""
    buffer, depth = "", 0
    for line in text.splitlines():
        stripped = line.split("#", 1)[0].rstrip() if not buffer else line.rstrip()
        if not stripped.strip() and not buffer:
            continue
        buffer += (" " if buffer else "") + stripped.rstrip("\\").strip()
        depth = sum(buffer.count(c) for c in "([{") - sum(buffer.count(c) for c in ")]}")
        if depth <= 0 and not stripped.endswith("\\"):
            yield buffer
            buffer = ""
    if buffer:
        yield buffer


def config(workdir):
    """The run's ``train_eval`` settings as an ``experiment.Config`` (defaults where unbound)."""
    from birds_tf.training.experiment import Config
    workdir = check(workdir, ())
    path = os.path.join(workdir, "operative_config.gin")
    if not os.path.exists(path):
        path = os.path.join(check(workdir, ("config.gin",)), "config.gin")
    with open(path) as f:
        text = f.read()
    fields = {field.name for field in dataclasses.fields(Config)}
    values = {}
    for statement in _statements(text):
        match = re.match(r"^train_eval\.(\w+)\s*=\s*(.+)$", statement)
        if match and match.group(1) in fields:
            try:
                values[match.group(1)] = ast.literal_eval(match.group(2))
            except (ValueError, SyntaxError):
                pass
    if isinstance(values.get("milestones"), list):
        values["milestones"] = tuple(values["milestones"])
    return Config(**values)


def load_model(workdir, which="final"):
    """The saved classifier (masks included): ``checkpoints/{which}.keras``."""
    if which not in ("best", "final"):
        raise ValueError(f"which must be 'best' or 'final', got {which!r}.")
    path = os.path.join(check(workdir, (f"checkpoints/{which}.keras",)), "checkpoints",
                        f"{which}.keras")
    import keras

    import birds_tf
    birds_tf.register_keras_objects()  # the masked layers, by name
    return keras.models.load_model(path, compile=False)


def mask_files(workdir):
    """``[(epoch, path)]`` of the per-epoch masks a sparse run saved, in epoch order."""
    paths = glob.glob(os.path.join(os.fspath(workdir), "masks", "epoch_*.npz"))
    return sorted((int(re.search(r"epoch_(\d+)", p).group(1)), p) for p in paths)


def splits(workdir, cfg=None):
    """The run's dataset splits, as it was trained on (same limits and seed)."""
    from birds_tf import data as data_lib
    cfg = cfg or config(workdir)
    return data_lib.get_dataset(cfg.dataset, batch_size=cfg.batch_size, data_dir=cfg.data_dir,
                                seed=cfg.seed, eval_batch_size=cfg.eval_batch_size,
                                max_train=cfg.max_train, max_eval=cfg.max_eval)
