"""The report: attacks run on a model, the robust accuracies as a dict, a table and a JSON file.

Why a library module: ``python -m launch.evaluate`` is a thin wrapper over ``evaluate_path``, and
the same steps serve notebooks and tests. Every input is checked (``evaluation.inputs``) before
any model is loaded or any attack runs.
"""
import os
import time

import numpy as np

from birds_tf import data as data_lib
from birds_tf.attacks import _common
from birds_tf.attacks import sanity as sanity_lib
from birds_tf.evaluation.batched import clean_flags, run_one, run_transfer
from birds_tf.evaluation.inputs import (DEFAULT_ATTACKS, check_attacks, check_compatible,
                                        check_split, check_which, parse_attack_options)
from birds_tf.evaluation.loaders import describe, load_classifier, load_npz, load_split
from birds_tf.utils import records
from birds_tf.utils.workdir import Workdir


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
        return os.path.join(path, Workdir.eval_json_name(part, which))
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
