"""The early-bird ticket detector of Robust Bird (paper Algorithm 1, lines 3-6).

After every epoch of cheap dense training a global magnitude mask is taken over the conv
kernels; ``MaskQueue`` keeps the Hamming distances between masks in a FIFO and
``ticket_emerged`` decides, from those distances and ``tau``, that the mask has settled.
``birds_tf.experiment.robust_bird`` runs the stages around it.
"""
import collections
import logging

import keras
import numpy as np

from birds_tf.sparsity import magnitude
from birds_tf.utils import checks

COMPARISONS = ("<", "<=")
DISTANCE_MODES = ("newest", "consecutive")


def ticket_emerged(distances, tau, comparison="<"):
    """The early-bird decision on one set of distances (``None``/empty: queue not yet full).

    ``comparison='<'`` is the paper's ``max(Q) < tau``; ``'<='`` the code's
    ``if dist > tau: return False``.
    """
    if comparison not in COMPARISONS:
        raise ValueError(f"Unknown comparison {comparison!r}; allowed: {COMPARISONS}.")
    if not distances:
        return False
    worst = max(float(d) for d in distances)
    return worst < tau if comparison == "<" else worst <= tau


class MaskQueue:
    """The early-bird FIFO. ``put(mask)`` returns the distances once enough masks were seen.

    ``mode='consecutive'`` (Algorithm 1): keeps the last ``length`` distances between consecutive
    masks. ``mode='newest'`` (released code): keeps the last ``length`` masks; distances are
    ``[d(newest, q[0]), ..., d(newest, q[length-2])]``, oldest first (``EarlyBird.cal_dist``).
    """

    def __init__(self, length=5, mode="consecutive"):
        if mode not in DISTANCE_MODES:
            raise ValueError(f"Unknown distance_mode {mode!r}; allowed: {DISTANCE_MODES}.")
        checks.integer("queue_length", length, 2)
        self.length = int(length)
        self.mode = mode
        self.masks = collections.deque(maxlen=self.length if mode == "newest" else 1)
        self.distances = collections.deque(maxlen=self.length)

    @property
    def masks_needed(self):
        """Epochs before the first decision: ``length`` masks (``length + 1`` if consecutive)."""
        return self.length if self.mode == "newest" else self.length + 1

    @staticmethod
    def flatten(mask):
        if isinstance(mask, dict):
            return np.concatenate([np.asarray(mask[k]).ravel() != 0 for k in mask])
        return np.asarray(mask).ravel() != 0

    def put(self, mask):
        flat = self.flatten(mask)
        if self.mode == "newest":
            self.masks.append(flat)
            if len(self.masks) < self.length:
                return None
            newest = self.masks[-1]
            return [magnitude.hamming_distance(newest, old) for old in list(self.masks)[:-1]]
        if self.masks:
            self.distances.append(magnitude.hamming_distance(flat, self.masks[-1]))
        self.masks.append(flat)
        if len(self.distances) < self.length:
            return None
        return list(self.distances)


class EarlyBirdDetector(keras.callbacks.Callback):
    """After every epoch: conv-only early-bird mask, FIFO distances; stops once a ticket emerged."""

    def __init__(self, net, density, tau=0.1, queue_length=5, comparison="<",
                 distance_mode="consecutive"):
        super().__init__()
        self.net = net
        self.density = float(density)
        self.tau = float(tau)
        self.comparison = comparison
        self.queue = MaskQueue(queue_length, distance_mode)
        self.history = []
        self.ticket_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        mask = magnitude.global_magnitude_masks(self.net, self.density, layer_filter="conv",
                                                rule="early_bird")
        distances = self.queue.put(mask)
        self.history.append({"epoch": epoch + 1, "distances": distances or []})
        if distances:
            logs["mask_distance_max"] = max(distances)
            for i, d in enumerate(distances):
                logs[f"mask_distance_{i + 1}"] = d
        if ticket_emerged(distances, self.tau, self.comparison):
            self.ticket_epoch = epoch + 1
            self.model.stop_training = True
            logging.info("Robust Bird: ticket emerged after stage-1 epoch %d (distances %s, "
                         "tau %s).", epoch + 1, distances, self.tau)
