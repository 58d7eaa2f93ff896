"""Clean and PGD robust accuracy over a whole split, as the paper's protocol measures them.

Sums (not means) are reduced across replicas so uneven last batches weigh correctly. PGD's
random starts are a pure function of (seed, draw, batch index): the per-epoch evaluation passes
its epoch as ``draw``, so each epoch gets fresh starts, as the authors' code draws new ones at
every evaluation, and a resumed run still sees exactly the starts of an uninterrupted one.
"""
import time

import tensorflow as tf

from birds_tf.attacks import pgd
from birds_tf.training.adversarial import AttackConfig, cross_entropy

EVAL_ATTACK = AttackConfig(eps=8 / 255, step_size=2 / 255, steps=20, random_start=True,
                           bn_mode="eval")


class SplitEvaluator:
    """Compiled once per (model, attack); call it on any batched dataset of (images, labels)."""

    def __init__(self, net, attack=EVAL_ATTACK, strategy=None, seed=0):
        self.net = net
        self.attack = attack
        self.strategy = strategy or tf.distribute.get_strategy()
        self.seed = int(seed)
        self._step = tf.function(self._distributed_step)

    def _replica_step(self, x, y, batch_seed):
        x = tf.cast(x, tf.float32)
        y = tf.cast(tf.reshape(y, [-1]), tf.int32)
        clean = tf.cast(self.net(x, training=False), tf.float32)
        attack = self.attack
        if attack.clean:
            adv = clean
        else:
            # Random starts are a function of (seed, draw, batch index): the same weights and
            # draw always get the same figures, before and after a resume.
            x_adv = pgd.pgd_linf_graph(self.net, x, y, attack.eps, attack.step_size,
                                       attack.steps, attack.random_start,
                                       training=attack.bn_mode == "train", seed=batch_seed)
            adv = tf.cast(self.net(x_adv, training=False), tf.float32)
        correct = tf.cast(tf.equal(tf.argmax(clean, -1, output_type=tf.int32), y), tf.float32)
        robust = tf.cast(tf.equal(tf.argmax(adv, -1, output_type=tf.int32), y), tf.float32)
        return (tf.reduce_sum(correct), tf.reduce_sum(robust),
                tf.reduce_sum(cross_entropy(y, adv)), tf.reduce_sum(cross_entropy(y, clean)),
                tf.cast(tf.shape(y)[0], tf.float32))

    def _distributed_step(self, x, y, batch_seed):
        per_replica = self.strategy.run(self._replica_step, args=(x, y, batch_seed))
        return [self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for v in per_replica]

    def batch_seed(self, index, draw=None):
        """The stateless seed of batch ``index``'s random starts: ``[seed, index]``, or for draw
        ``d`` (an epoch) ``[seed, (d + 1) * 2**32 + index]``, a disjoint set per draw."""
        if draw is None:
            return [self.seed, int(index)]
        if int(draw) < 0:
            raise ValueError(f"draw must be >= 0, got {draw!r}.")
        return [self.seed, (int(draw) + 1) * 2**32 + int(index)]

    def __call__(self, dataset, progress=None, draw=None):
        """Returns ``{"sa", "ra" (percent), "robust_loss", "clean_loss", "n", "seconds"}``.

        Args:
          dataset: batched (images, labels).
          progress: called after each batch, if given.
          draw: which set of random starts (the per-epoch evaluation passes the 0-indexed
            epoch); ``None``, the default, is the evaluator's one fixed set (final figures).
        """
        start = time.time()
        totals = [0.0] * 5
        for index, (x, y) in enumerate(self.strategy.experimental_distribute_dataset(dataset)):
            values = self._step(x, y, tf.constant(self.batch_seed(index, draw), tf.int64))
            totals = [t + float(v) for t, v in zip(totals, values)]
            if progress is not None:
                progress()
        correct, robust, robust_loss, clean_loss, n = totals
        if n == 0:
            raise ValueError("Cannot evaluate on an empty split.")
        return {"sa": 100.0 * correct / n, "ra": 100.0 * robust / n,
                "robust_loss": robust_loss / n, "clean_loss": clean_loss / n, "n": int(n),
                "seconds": time.time() - start}
