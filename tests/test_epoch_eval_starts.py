"""Per-epoch evaluation draws fresh PGD random starts every epoch (as the authors' code does),
keyed by (seed, epoch) so that a resumed run sees the starts of an uninterrupted one."""
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from birds_tf.training import callbacks as cb
from birds_tf.training import epoch_eval
from birds_tf.training.adversarial import AdversarialModel, AttackConfig
from birds_tf.training.optimizer import TorchSGD

# One PGD step of 0.001 inside an eps of 0.2: the figures are dominated by the random start.
ATTACK = AttackConfig(eps=0.2, step_size=0.001, steps=1, random_start=True, bn_mode="eval")


def _net():
    keras.utils.set_random_seed(3)
    inp = keras.Input((4, 4, 1))
    x = keras.layers.Dense(8, activation="relu")(keras.layers.Flatten()(inp))
    return keras.Model(inp, keras.layers.Dense(3)(x))


def _data(n=16):
    rng = np.random.default_rng(0)
    return rng.random((n, 4, 4, 1)).astype("float32"), rng.integers(0, 3, n).astype("int32")


def _by_hand_loss(net, x, y, seed_pair):
    """Robust CE written out: the stateless start with the given seed, one sign step."""
    x = tf.constant(x)
    delta = tf.random.stateless_uniform(x.shape, tf.constant(seed_pair, tf.int64),
                                        -ATTACK.eps, ATTACK.eps)
    delta = tf.clip_by_value(x + delta, 0.0, 1.0) - x
    with tf.GradientTape() as tape:
        tape.watch(delta)
        ce = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
            y, net(x + delta, training=False), from_logits=True))
    delta = tf.clip_by_value(delta + ATTACK.step_size * tf.sign(tape.gradient(ce, delta)),
                             -ATTACK.eps, ATTACK.eps)
    delta = tf.clip_by_value(x + delta, 0.0, 1.0) - x
    return float(tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
        y, net(x + delta, training=False), from_logits=True)))


def test_each_draw_has_its_own_starts_and_none_keeps_the_fixed_set():
    net = _net()
    x, y = _data()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    evaluator = epoch_eval.SplitEvaluator(net, ATTACK, seed=5)
    fixed = evaluator(ds)["robust_loss"]
    assert fixed == pytest.approx(_by_hand_loss(net, x, y, [5, 0]), rel=1e-5)
    epoch0, epoch1 = (evaluator(ds, draw=d)["robust_loss"] for d in (0, 1))
    assert epoch0 == pytest.approx(_by_hand_loss(net, x, y, [5, 2**32]), rel=1e-5)
    assert epoch1 == pytest.approx(_by_hand_loss(net, x, y, [5, 2 * 2**32]), rel=1e-5)
    assert len({round(v, 6) for v in (fixed, epoch0, epoch1)}) == 3
    # A fresh evaluator (a resumed run) draws the same starts for the same epoch.
    again = epoch_eval.SplitEvaluator(net, ATTACK, seed=5)(ds, draw=1)["robust_loss"]
    assert again == epoch1
    with pytest.raises(ValueError, match="draw must be >= 0, got -1"):
        evaluator(ds, draw=-1)


class _Record(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rows = {}

    def on_epoch_end(self, epoch, logs=None):
        self.rows[epoch] = (logs["val_robust_loss"], logs["test_robust_loss"])


def _fit(initial_epoch, epochs=3):
    net = _net()
    model = AdversarialModel(net, AttackConfig(eps=0.1, step_size=0.05, steps=1))
    model.compile(optimizer=TorchSGD(0.0, momentum=0.9))  # lr 0: the weights never move
    x, y = _data()
    split = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    record = _Record()
    model.fit(x, y, batch_size=8, epochs=epochs, initial_epoch=initial_epoch, verbose=0,
              callbacks=[cb.EpochEvaluation(types.SimpleNamespace(val=split, test=split),
                                            ATTACK, seed=4), record])
    return record.rows


def test_epoch_evaluation_draws_new_starts_per_epoch_and_the_same_after_resume():
    full = _fit(0)
    # Same weights every epoch, so only the starts make the figures differ.
    assert len({round(full[e][0], 6) for e in range(3)}) == 3
    resumed = _fit(1)
    assert resumed[1] == full[1] and resumed[2] == full[2]
