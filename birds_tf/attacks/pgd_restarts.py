"""PGD-k (cross-entropy) and CW-inf (PGD on the CW margin loss) with random restarts.

Each restart is the reference's advertorch PGD (uniform start, signed steps, last iterate); an
example counts as broken if any restart breaks it, so restarts only re-attack the examples that
are still classified correctly. Clean-misclassified examples are returned unchanged.
"""
import numpy as np
import tensorflow as tf

from birds_tf.attacks import _common
from birds_tf.attacks.pgd import pgd_linf_graph, validate


def _pgd_core(model, x, y, seed, eps, step_size, steps, loss, random_start):
    """One restart: the training attack's own loop, in eval mode, seeded per restart."""
    return pgd_linf_graph(model, x, y, eps, step_size, steps, random_start, training=False,
                          loss=loss, seed=seed)


def pgd_restarts(model, x, y, eps=8 / 255, step_size=2 / 255, steps=20, restarts=1, loss="ce",
                 random_start=True, seed=0):
    """L-inf PGD with ``restarts`` random restarts; returns adversarial images (a tf.Tensor).

    Without a random start every restart would repeat the first, so only one run is made.
    An example counts as broken by the first restart that misclassifies it.

    Args:
      model: a callable mapping [0, 1] images to logits.
      x: images in [0, 1], NHWC.
      y: integer labels, shape (N,).
      eps: the L-inf radius.
      step_size: the step per iteration.
      steps: iterations per restart (>= 1).
      restarts: runs from fresh random starts (>= 1).
      loss: "ce" (cross-entropy) or "cw" (the margin loss).
      random_start: start each run from a uniform point in the eps-ball.
      seed: seeds the random starts (restart ``r`` uses a seed derived from it).
    """
    validate(eps, step_size, steps, loss)
    restarts = _common.check_positive_int(restarts, "restarts")
    eps, step_size = float(eps), float(step_size)
    x, y = _common.as_inputs(x, y)

    def build(get_model):
        def fn(x, y, seed, eps, step_size):
            return _pgd_core(get_model(), x, y, seed, eps, step_size, steps, loss, random_start)
        return fn, (tf.TensorSpec((2,), tf.int32), tf.TensorSpec((), tf.float32),
                    tf.TensorSpec((), tf.float32))
    core = _common.compiled(model, ("pgd", steps, loss, bool(random_start)), build, x)

    x_adv = x.numpy().copy()
    robust = (_common.predict_labels(model, x) == y).numpy()
    y_np = y.numpy()
    for r in range(restarts if random_start else 1):
        idx = np.flatnonzero(robust)
        if idx.size == 0:
            break
        adv = core(tf.gather(x, idx), tf.gather(y, idx), _common.seed_pair(seed, r),
                   tf.constant(eps), tf.constant(step_size)).numpy()
        x_adv[idx] = adv
        robust[idx] = _common.predict_labels(model, adv).numpy() == y_np[idx]
    return tf.convert_to_tensor(x_adv)


def cw_inf(model, x, y, eps=8 / 255, step_size=2 / 255, steps=20, restarts=1, random_start=True,
           seed=0):
    """CW-inf: PGD on the margin ``max_{j!=y} z_j - z_y`` (an L-inf variant offered as an
    assumption, docs/authors-code.md, "Evaluation and the attacks the paper names"; the paper's
    CW is CW-L2, ``cw.cw_l2``).

    Args:
      model, x, y, eps, step_size, steps, restarts, random_start, seed: as ``pgd_restarts``.
    """
    return pgd_restarts(model, x, y, eps, step_size, steps, restarts, "cw", random_start, seed)
