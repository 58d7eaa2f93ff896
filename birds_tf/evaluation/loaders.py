"""What an evaluation loads: the classifier (a workdir's checkpoint or a SavedModel), what is
known of it without loading it (``describe``), and the examples (a dataset split or an ``.npz``).
"""
import json
import os

import numpy as np
import tensorflow as tf

from birds_tf import data as data_lib
from birds_tf.evaluation.inputs import check_split, check_which, model_kind
from birds_tf.utils import workdir as workdir_lib


class SavedModelClassifier:
    """A loaded SavedModel's ``serve`` as the ``model(x, training=False) -> logits`` callable the
    attacks expect; gradients flow through it to the input."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._loaded = tf.saved_model.load(self.path)
        serve = getattr(self._loaded, "serve", None)
        if callable(serve):
            self._fn, self._key = serve, None
            spec = (getattr(serve, "input_signature", None) or (None,))[0]
        else:  # a SavedModel without Keras' ``serve`` endpoint: its default signature
            sigs = self._loaded.signatures
            name = "serve" if "serve" in sigs else "serving_default"
            if name not in sigs:
                raise ValueError(f"SavedModel {self.path!r} has no 'serve' function or "
                                 f"'serving_default' signature (it has {list(sigs)}).")
            fn = sigs[name]
            (self._key, spec), = fn.structured_input_signature[1].items()
            self._fn = fn
        self.input_shape = tuple(spec.shape) if spec is not None else None

    def __call__(self, x, training=False):
        del training  # a SavedModel is always in inference mode
        x = tf.convert_to_tensor(x, tf.float32)
        if self._key is None:
            out = self._fn(x)
        else:
            out = self._fn(**{self._key: x})
        if isinstance(out, dict):
            (out,) = out.values() if len(out) == 1 else (out["output_0"],)
        return out


def load_classifier(path, which="best"):
    """The classifier at ``path``: a workdir's ``checkpoints/<which>.keras`` (masks included) or
    a SavedModel wrapped by ``SavedModelClassifier``."""
    kind = model_kind(path)
    if kind == "saved_model":
        return SavedModelClassifier(path)
    describe(path, which)  # refuses a missing checkpoint with the fix in the message
    return workdir_lib.load_model(path, which)


def describe(path, which="best"):
    """What is known of ``path`` without loading it: kind, checkpoint file, dataset, data_dir."""
    path = os.fspath(path)
    kind = model_kind(path)
    info = {"path": os.path.abspath(path), "kind": kind, "dataset": None, "data_dir": None}
    if kind == "workdir":
        check_which(which)
        info["which"] = which
        info["checkpoint"] = os.path.abspath(workdir_lib.Workdir(path).checkpoint(which))
        if not os.path.isfile(info["checkpoint"]):
            other = "final" if which == "best" else "best"
            name = workdir_lib.Workdir.checkpoint_name(which)
            raise ValueError(f"Workdir {path!r} has no {name}; pass --which={other} or let the "
                             "run finish.")
        info["dataset"], info["data_dir"] = _workdir_data(path)
    else:
        info["checkpoint"] = info["path"]
        meta = os.path.join(path, "metadata.json")
        if os.path.isfile(meta):  # written by launch.export
            with open(meta) as f:
                info["dataset"] = json.load(f).get("dataset")
    return info


def _workdir_data(path):
    """(dataset, data_dir) of a workdir: its gin config, else results.json's dataset."""
    dataset = data_dir = None
    try:
        from birds_tf.experiment.train_eval import Config  # gin and the trainer: only here
        cfg = Config.from_workdir(path)
        dataset, data_dir = cfg.dataset, cfg.data_dir
    except Exception:  # no or unreadable config: fall back to results.json
        pass
    files = workdir_lib.Workdir(path)
    if os.path.isfile(files.results_json):
        dataset = files.read_results().get("dataset") or dataset
    return dataset, data_dir


def load_split(dataset, split="test", data_dir=None, n=None, batch_size=256):
    """The first ``n`` (all if None) examples of a dataset split as numpy (x in [0, 1], y)."""
    check_split(split)
    splits = data_lib.get_dataset(dataset, batch_size=batch_size, data_dir=data_dir,
                                  max_eval=n, max_train=n)
    ds = {"test": splits.test, "val": splits.val, "train": splits.train_eval}[split]
    xs, ys = [], []
    for xb, yb in ds.as_numpy_iterator():
        xs.append(xb)
        ys.append(yb)
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.int32)


def load_npz(path):
    """(x float32 NHWC in [0, 1], y int32) from an ``.npz`` with arrays ``x`` and ``y``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"--data file {path!r} does not exist; pass an .npz holding x (N x H x W "
                         "x C images in [0, 1]) and y (N integer labels).")
    try:
        data = np.load(path, allow_pickle=False)
        files = set(getattr(data, "files", ()))
    except Exception as e:  # not a zip / not numpy / pickled objects
        raise ValueError(f"--data file {path!r} is not a readable .npz ({e}); save it with "
                         "np.savez(path, x=images, y=labels).") from None
    missing = [k for k in ("x", "y") if k not in files]
    if missing:
        raise ValueError(f"--data file {path!r} has no array {' or '.join(missing)} (it has "
                         f"{sorted(files)}); save it with np.savez(path, x=images, y=labels).")
    with data:
        x, y = data["x"], data["y"]
    if x.ndim != 4:
        raise ValueError(f"x in {path!r} has shape {x.shape}; it must be N x H x W x C (add a "
                         "channel axis with x[..., None] for grey images).")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"x in {path!r} has dtype {x.dtype}; it must hold numbers in [0, 1].")
    x = x.astype(np.float32)
    if x.size and (not np.all(np.isfinite(x)) or x.min() < 0.0 or x.max() > 1.0):
        raise ValueError(f"x in {path!r} has values in [{np.nanmin(x):.4g}, {np.nanmax(x):.4g}]; "
                         "it must be in [0, 1] (e.g. divide uint8 images by 255).")
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot
        y = y.argmax(-1)
    y = y.reshape(-1) if y.ndim == 2 else y
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer)
                           or (np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)))):
        raise ValueError(f"y in {path!r} (shape {y.shape}, dtype {y.dtype}) must be N integer "
                         "class labels.")
    if len(x) != len(y):
        raise ValueError(f"{path!r} holds {len(x)} images in x but {len(y)} labels in y; they "
                         "must match.")
    if len(x) == 0:
        raise ValueError(f"{path!r} holds no examples.")
    return x, y.astype(np.int32)
