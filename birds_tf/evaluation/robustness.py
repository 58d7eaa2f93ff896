"""Robust evaluation of a trained model: load it, gather examples, run attacks, build a report.

Why a library module: ``python -m launch.evaluate`` is a thin wrapper, and the same steps serve
notebooks and tests. Every input is checked (``check_*``) before any model is loaded or any attack
runs, so a typo fails in the first second with the offending value and the fix in the message.
"""
import ast
import json
import os
import sys
import time

import numpy as np
import tensorflow as tf

from birds_tf import data as data_lib
from birds_tf.attacks import _common, registry, transfer
from birds_tf.attacks import sanity as sanity_lib
from birds_tf.utils import records
from birds_tf.utils import workdir as workdir_lib

# The paper's Table A8 attacks (Appendix A3.2): its "CW" is taken as CW-L2, inferred from the
# parameters it gives (a search on c, a learning rate); PGD-20 is the main tables' attack.
DEFAULT_ATTACKS = ("pgd20", "cw_l2", "autoattack")
WHICH = ("best", "final")
SPLITS = ("test", "val", "train")


# ----------------------------------------------------------------------------- input checks

def check_attacks(attacks):
    """A tuple of registry names (a comma-separated string is accepted), duplicates dropped."""
    if isinstance(attacks, str):
        attacks = [a.strip() for a in attacks.split(",")]
    names = [a for a in (attacks or ()) if a]
    if not names:
        raise ValueError(f"No attack given; pass e.g. --attacks={','.join(DEFAULT_ATTACKS)} "
                         f"(allowed: {', '.join(registry.ATTACKS)}).")
    unknown = [a for a in names if a not in registry.ATTACKS]
    if unknown:
        raise ValueError(f"Unknown attack(s) {unknown}; allowed: {', '.join(registry.ATTACKS)}.")
    return tuple(dict.fromkeys(names))


def check_which(which):
    if which not in WHICH:
        raise ValueError(f"which must be 'best' or 'final' (the checkpoint of a workdir), got "
                         f"{which!r}.")
    return which


def check_split(split):
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}.")
    return split


def model_kind(path):
    """'workdir' (has checkpoints/*.keras) or 'saved_model' (has saved_model.pb); else an error."""
    path = os.fspath(path)
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return "saved_model"
    ckpt = os.path.join(path, "checkpoints")
    if os.path.isdir(ckpt) and any(f.endswith(".keras") for f in os.listdir(ckpt)):
        return "workdir"
    kinds = ("a launch.train workdir (checkpoints/best.keras or final.keras) or a SavedModel "
             "folder (saved_model.pb, e.g. from launch.export)")
    if not os.path.exists(path):
        raise ValueError(f"{path!r} does not exist; pass {kinds}.")
    raise ValueError(f"{path!r} has neither checkpoints/best.keras|final.keras nor "
                     f"saved_model.pb; pass {kinds}.")


def parse_attack_options(items):
    """``["autoattack.n_iter=10", ...]`` -> ``{"autoattack": {"n_iter": 10}}``, checked against
    each attack's signature (unknown options are refused with the allowed ones listed)."""
    out = {}
    for item in items or ():
        head, sep, value = str(item).partition("=")
        name, dot, key = head.strip().partition(".")
        if not sep or not dot or not key:
            raise ValueError(f"Attack option {item!r} is not ATTACK.OPTION=VALUE, e.g. "
                             "autoattack.n_iter=10.")
        check_attacks([name])
        try:
            parsed = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            parsed = value.strip()
        out.setdefault(name, {})[key.strip()] = parsed
    for name, opts in out.items():
        registry.resolve_kwargs(name, registry.ATTACKS[name][1], 8 / 255, opts)
    return out


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


# ----------------------------------------------------------------------------- models

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
        info["checkpoint"] = os.path.abspath(os.path.join(path, "checkpoints", f"{which}.keras"))
        if not os.path.isfile(info["checkpoint"]):
            other = "final" if which == "best" else "best"
            raise ValueError(f"Workdir {path!r} has no checkpoints/{which}.keras; pass "
                             f"--which={other} or let the run finish.")
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
    results = os.path.join(path, "results.json")
    if os.path.isfile(results):
        with open(results) as f:
            dataset = json.load(f).get("dataset") or dataset
    return dataset, data_dir


def input_shape_of(model):
    """The per-example input shape the model declares, or None."""
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, list):
        shape = shape[0]
    return tuple(shape[1:]) if shape else None


def check_compatible(model, x, y, what="the data"):
    """Refuse images the model cannot take, before an attack fails deep inside a graph."""
    shape = input_shape_of(model)
    if shape and len(shape) == x.ndim - 1 and any(
            s is not None and s != d for s, d in zip(shape, x.shape[1:])):
        raise ValueError(f"The model takes images of shape {shape} but {what} has "
                         f"{tuple(x.shape[1:])}; evaluate it on its own dataset.")
    logits = _common.logits_of(model, x[:2])
    n_classes = int(logits.shape[-1])
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"Labels of {what} span [{y.min()}, {y.max()}] but the model has "
                         f"{n_classes} classes.")
    return n_classes


# ----------------------------------------------------------------------------- data

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


# ----------------------------------------------------------------------------- attacks

class _Progress:
    """One bar per attack over batches on a terminal; one summary line otherwise (no spam)."""

    def __init__(self, label, total, enabled=None, stream=None):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = True if enabled is None else bool(enabled)
        self.label, self.total, self.start = label, total, time.time()

    def update(self, done):
        if self.enabled and self.tty:
            width = 30
            filled = int(width * done / max(self.total, 1))
            self.stream.write(f"\r{self.label:<16} [{'=' * filled}{'.' * (width - filled)}] "
                              f"{done}/{self.total} batches {time.time() - self.start:7.1f}s")
            self.stream.flush()

    def close(self):
        if not self.enabled:
            return
        took = f"{time.time() - self.start:.1f}s"
        self.stream.write("\n" if self.tty else f"{self.label}: {self.total} batches, {took}\n")
        self.stream.flush()


def _batches(n, batch_size):
    """Slices of ``batch_size``; a trailing single example joins the previous batch (a 1-image
    batch trips a TF/oneDNN crash in stride-2 1x1 convolutions)."""
    bounds = list(range(0, n, batch_size)) + [n]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
        del bounds[-2]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


def run_one(name, model, x, y, eps, batch_size=256, options=None, progress=None):
    """``registry.run_attack`` batch by batch with a progress bar; its result dict."""
    parts = _batches(len(x), batch_size)
    bar = _Progress(name, len(parts), progress)
    start = time.time()
    robust = []
    for i, s in enumerate(parts):
        r = registry.run_attack(name, model, x[s], y[s], eps=eps, batch_size=s.stop - s.start,
                                first_batch=i, **(options or {}))
        robust.append(r["robust"])
        bar.update(i + 1)
    bar.close()
    robust = np.concatenate(robust)
    return dict(name=name, robust=robust, n=int(robust.size),
                robust_accuracy=float(100.0 * robust.mean()), seconds=time.time() - start)


def clean_flags(model, x, y, batch_size=256):
    """Per-example correctness on the unperturbed images."""
    return np.concatenate([_common.predict_labels(model, x[s]).numpy() == y[s]
                           for s in _batches(len(x), batch_size)]).astype(np.bool_)


def run_transfer(source, target, x, y, attack, eps, batch_size=256, options=None,
                 progress=None):
    """``transfer_attack`` batch by batch: craft on ``source``, score ``target``."""
    parts = _batches(len(x), batch_size)
    bar = _Progress(f"transfer {attack}", len(parts), progress)
    start = time.time()
    robust, robust_src = [], []
    for i, s in enumerate(parts):
        r = transfer.transfer_attack(source, target, x[s], y[s], attack, batch_size=batch_size,
                                     eps=eps, **(options or {}))
        robust.append(r["robust"])
        robust_src.append(r["source_robust_accuracy"] * r["n"] / 100.0)
        bar.update(i + 1)
    bar.close()
    robust = np.concatenate(robust)
    n = int(robust.size)
    return dict(robust=robust, n=n, robust_accuracy=float(100.0 * robust.mean()),
                source_robust_accuracy=float(100.0 * sum(robust_src) / n),
                seconds=time.time() - start)


def evaluate(model, x, y, attacks=DEFAULT_ATTACKS, eps=8 / 255, batch_size=256,
             attack_options=None, transfer_source=None, transfer_attack="pgd20",
             transfer_label=None, sanity=True, large_eps_check=False, progress=None):
    """Robust accuracy of ``model`` on (x, y) under each attack; returns the report dict.

    ``report["attacks"][name]`` = robust_accuracy (percent), n, seconds; ``clean_accuracy``;
    ``worst_case_robust_accuracy`` (robust to every attack run); ``transfer`` (when
    ``transfer_source`` is given: examples crafted on it with ``transfer_attack``); ``rows`` (the
    printed table); ``warnings`` from ``sanity.sanity_checks`` (outputs random across two calls,
    probabilities instead of logits, zero gradients, a weaker attack beating a stronger one).

    Args:
      model: a callable mapping [0, 1] images to logits (a Keras model, or a loaded SavedModel
        via ``SavedModelClassifier``).
      x: images in [0, 1], NHWC.
      y: integer labels, shape (N,).
      attacks: registry names, run in order (default PGD-20, CW-L2, AutoAttack: the paper's).
      eps: the L-inf radius.
      batch_size: examples per attack call.
      attack_options: ``{attack name: {keyword: value}}`` overriding an attack's settings.
      transfer_source: a model to craft transfer examples on (paper Table A7), or None.
      transfer_attack: the registry attack used on ``transfer_source``.
      transfer_label: the transfer row's name in the table (default: the source's).
      sanity: run the sanity checks and put their warnings in the report.
      large_eps_check: also check that PGD at eps=0.5 breaks the model (gradient masking).
      progress: a bar per attack on a terminal, one summary line otherwise (None or True);
        False prints nothing.
    """
    attacks = check_attacks(attacks)
    eps = _common.check_eps(eps)
    batch_size = _common.check_positive_int(batch_size, "batch_size")
    options = attack_options or {}
    x = np.asarray(x, np.float32)
    y = np.asarray(y).astype(np.int32).reshape(-1)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)} labels.")
    if len(x) < 2:
        raise ValueError(f"Need at least 2 examples to evaluate, got {len(x)}.")
    start = time.time()
    clean = clean_flags(model, x, y, batch_size)
    results, rows = {}, []
    for name in attacks:
        r = run_one(name, model, x, y, eps, batch_size, options.get(name), progress)
        results[name] = r
        rows.append(dict(attack=name, robust_accuracy=r["robust_accuracy"], n=r["n"],
                         seconds=r["seconds"]))
    worst = np.logical_and.reduce([r["robust"] for r in results.values()])
    report = dict(
        eps=eps, n=int(len(x)), batch_size=batch_size, clean_accuracy=float(100 * clean.mean()),
        attacks={k: dict(robust_accuracy=r["robust_accuracy"], n=r["n"], seconds=r["seconds"],
                         options=options.get(k, {})) for k, r in results.items()},
        worst_case_robust_accuracy=float(100 * worst.mean()), rows=rows, transfer=None)
    if transfer_source is not None:
        t = run_transfer(transfer_source, model, x, y, transfer_attack, eps, batch_size,
                         options.get(transfer_attack), progress)
        label = f"transfer {transfer_attack}"
        report["transfer"] = dict(attack=transfer_attack, source=transfer_label,
                                  robust_accuracy=t["robust_accuracy"],
                                  source_robust_accuracy=t["source_robust_accuracy"],
                                  n=t["n"], seconds=t["seconds"])
        rows.append(dict(attack=label, robust_accuracy=t["robust_accuracy"], n=t["n"],
                         seconds=t["seconds"]))
    warnings = []
    if sanity:
        k = min(len(x), 64)
        warnings = sanity_lib.sanity_checks(
            model, x[:k], y[:k], results={n: r["robust_accuracy"] for n, r in results.items()},
            large_eps=0.5 if large_eps_check else None, n_calls=2)
        if report["transfer"] and min(r["robust_accuracy"] for r in results.values()) \
                > report["transfer"]["robust_accuracy"]:
            warnings.append(
                f"transferred examples ({report['transfer']['robust_accuracy']:.2f}%) beat every "
                "white-box attack: the model's own gradients are likely masked.")
    report["warnings"] = list(warnings)
    report["seconds"] = time.time() - start
    return report


def format_table(report):
    """The printed table: attack | robust acc % | n | seconds, clean accuracy first."""
    lines = [f"{'attack':<24} | {'robust acc %':>12} | {'n':>6} | {'seconds':>8}",
             f"{'-' * 24}-+-{'-' * 12}-+-{'-' * 6}-+-{'-' * 8}",
             f"{'(clean)':<24} | {report['clean_accuracy']:>12.2f} | {report['n']:>6} | "
             f"{'':>8}"]
    for row in report["rows"]:
        lines.append(f"{row['attack']:<24} | {row['robust_accuracy']:>12.2f} | {row['n']:>6} | "
                     f"{row['seconds']:>8.1f}")
    return "\n".join(lines)


def default_out(path, kind, split, which, data=None):
    """``<workdir>/eval_<split>_<which>.json``, or ``<saved_model>.eval_<split>.json`` beside a
    SavedModel; with ``data`` the split part is ``data-<file stem>``."""
    part = f"data-{os.path.splitext(os.path.basename(os.fspath(data)))[0]}" if data else split
    path = os.fspath(path).rstrip("/\\") or "."
    if kind == "workdir":
        return os.path.join(path, f"eval_{part}_{which}.json")
    return f"{path}.eval_{part}.json"


def evaluate_path(path, which="best", split="test", dataset=None, data_dir=None, data=None,
                  attacks=DEFAULT_ATTACKS, eps=8 / 255, n=None, batch_size=256,
                  attack_options=None, transfer_from=None, transfer_attack="pgd20", out=None,
                  sanity=True, large_eps_check=False, progress=None):
    """Everything ``launch.evaluate`` does: check inputs, load, attack, write ``out`` (JSON).

    Returns (report, out path). Every argument is checked before a model is loaded.
    """
    attacks = check_attacks(attacks)
    eps = _common.check_eps(eps)
    batch_size = _common.check_positive_int(batch_size, "batch_size")
    if n is not None:
        n = _common.check_positive_int(n, "n", minimum=2)
    check_which(which)
    check_split(split)
    check_attacks([transfer_attack])
    options = attack_options if isinstance(attack_options, dict) else \
        parse_attack_options(attack_options)
    info = describe(path, which)
    src_info = describe(transfer_from, which) if transfer_from else None
    if data is not None:
        x, y = load_npz(data)
    else:
        dataset = dataset or info["dataset"]
        data_dir = data_dir if data_dir is not None else info["data_dir"]
        if not dataset:
            raise ValueError(f"{info['path']!r} is a SavedModel without metadata.json naming "
                             "its dataset: pass --dataset=NAME (digits, cifar10, cifar100, "
                             "tiny_imagenet) or --data=FILE.npz with your own x and y.")
        if dataset not in data_lib.DATASETS:
            raise ValueError(f"Unknown dataset {dataset!r}; allowed: "
                             f"{', '.join(data_lib.DATASETS)}.")
        x, y = load_split(dataset, split, data_dir, n, batch_size)
    if n is not None:
        x, y = x[:n], y[:n]
    out = out or default_out(path, info["kind"], split, which, data)
    model = load_classifier(path, which)
    what = f"--data {os.fspath(data)!r}" if data is not None else f"{dataset} {split}"
    check_compatible(model, x, y, what)
    source = None
    if transfer_from:
        source = load_classifier(transfer_from, which)
        check_compatible(source, x, y, what)
    report = evaluate(model, x, y, attacks, eps, batch_size, options, source, transfer_attack,
                      src_info["checkpoint"] if src_info else None, sanity, large_eps_check,
                      progress)
    report = dict(model=info["checkpoint"], kind=info["kind"],
                  which=which if info["kind"] == "workdir" else None,
                  dataset=None if data is not None else dataset,
                  split=None if data is not None else split,
                  data=os.path.abspath(os.fspath(data)) if data is not None else None,
                  **report)
    records.write_json(out, report)
    return report, out
