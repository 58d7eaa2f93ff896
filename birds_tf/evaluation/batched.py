"""Attacks run batch by batch with a progress bar: white-box, clean and transfer.

Why batches here and not in the attacks: a report covers thousands of examples, the progress bar
and the seeds (``first_batch``) follow the batches, and a trailing 1-image batch must be avoided.
"""
import sys
import time

import numpy as np

from birds_tf.attacks import _common, registry, transfer


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
