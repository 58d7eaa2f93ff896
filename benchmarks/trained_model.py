"""A robust model made inside the benchmark, and AutoAttack's work counted per attack.

Why: on random weights almost no image survives APGD-CE, so an AutoAttack line mostly times fixed
costs. A short PGD-AT run on a fixed synthetic data set (``synthetic_data``) gives a model most
of whose images survive APGD-CE, so APGD-T, FAB-T and Square really run. ``count_autoattack``
records how many images each attack of our cascade is given and how long it takes, the figures
``torch_ref.py`` records for torchattacks' ``MultiAttack``.
"""
import contextlib
import time

import numpy as np


def synthetic_data(n, size=32, seed=0, mix=0.5, noise=0.03):
    """``n`` images of 10 classes, each a mix of its class template and another's, plus noise.

    The templates are fixed 4x4 colour block patterns (seed 1234, whatever ``seed``): the train
    and test sets drawn with different seeds share them. Each image is ``(1 - l) * T_label +
    l * T_other + noise`` with ``l`` uniform in [0, mix): images with ``l`` near 0.5 lie near a
    class boundary and can be attacked, the rest cannot, so robust accuracy spreads between 0
    and 1 instead of sitting at either end.

    Returns (float32 NHWC images in [0, 1], int32 labels).
    """
    from birds_tf.data import synthetic
    return synthetic.images(n, seed, mix=mix, noise=noise, size=size)


def train_robust(net, steps, batch=64, pgd_steps=5, seed=0, size=32):
    """PGD-AT (eps 8/255, step 2/255, ``pgd_steps`` iterations) of ``net`` for ``steps`` steps of
    ``batch`` synthetic images (seed ``seed``); returns the seconds it took."""
    import birds_tf
    import tensorflow as tf

    x, y = synthetic_data(batch * steps, size=size, seed=seed)
    model = birds_tf.AdversarialModel(net, birds_tf.AttackConfig(
        eps=8 / 255, step_size=2 / 255, steps=pgd_steps), seed=seed)
    model.compile(optimizer=birds_tf.TorchSGD(0.05, momentum=0.9, l2=5e-4))
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)
    t0 = time.perf_counter()
    model.fit(ds, epochs=1, verbose=0)
    return time.perf_counter() - t0


@contextlib.contextmanager
def count_autoattack():
    """Within it, every attack AutoAttack's cascade calls records ``{name: {"images",
    "seconds", "calls"}}`` in the yielded dict: images = how many it was given (the points
    still robust), seconds = its wall time until its images are computed."""
    import importlib

    import tensorflow as tf
    # The module, not the function of the same name that birds_tf.attacks exports.
    autoattack = importlib.import_module("birds_tf.attacks.autoattack")

    stats = {}
    original = dict(autoattack._FUNCS)

    def timed(name, fn):
        def call(model, x, y, **kwargs):
            t0 = time.perf_counter()
            adv = fn(model, x, y, **kwargs)
            adv = tf.constant(np.asarray(adv))  # computed before the clock stops
            entry = stats.setdefault(name, {"images": 0, "seconds": 0.0, "calls": 0})
            entry["images"] += int(x.shape[0])
            entry["seconds"] += time.perf_counter() - t0
            entry["calls"] += 1
            return adv
        return call

    for name, fn in original.items():
        autoattack._FUNCS[name] = timed(name, fn)
    try:
        yield stats
    finally:
        autoattack._FUNCS.update(original)


def images_entering(ra_after, n, attacks):
    """How many images each attack of the cascade should be given: the count still robust after
    the one before (``robust_accuracy_after`` percents of ``n`` images, "clean" first); an
    attack after one that left none is given none."""
    out, before = {}, ra_after["clean"]
    for name in attacks:
        out[name] = int(round(before * n / 100.0))
        before = ra_after.get(name, 0.0) if out[name] else 0.0
    return out
