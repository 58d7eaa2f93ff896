"""The RGG's train RA: the final model on the unaugmented training split, the evaluation attack,
BatchNorm in inference mode (checked against an independent PGD loop)."""
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from birds_tf.experiment import train_eval as experiment
from birds_tf.training import epoch_eval
from birds_tf.training.adversarial import AttackConfig
from birds_tf.utils.workdir import Workdir

ATTACK = AttackConfig(eps=0.1, step_size=0.04, steps=3, random_start=True, bn_mode="eval")


def _net():
    keras.utils.set_random_seed(2)
    inp = keras.Input((4, 4, 1))
    x = keras.layers.Dense(8)(keras.layers.Flatten()(inp))
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn")(x))
    net = keras.Model(inp, keras.layers.Dense(3)(x))
    bn = net.get_layer("bn")  # moving statistics far from any batch's: train mode would differ
    bn.moving_mean.assign(np.full(8, 0.7, np.float32))
    bn.moving_variance.assign(np.full(8, 0.05, np.float32))
    return net


def _reference(net, batches, seed, training):
    """PGD written out here: stateless start keyed by (seed, batch index), sign steps, CE."""
    robust = correct = loss = n = 0.0
    for index, (x, y) in enumerate(batches):
        y = tf.constant(y, tf.int32)
        delta = tf.random.stateless_uniform(x.shape, tf.constant([seed, index], tf.int64),
                                            -ATTACK.eps, ATTACK.eps)
        delta = tf.clip_by_value(x + delta, 0.0, 1.0) - x
        for _ in range(ATTACK.steps):
            with tf.GradientTape() as tape:
                tape.watch(delta)
                ce = tf.keras.losses.sparse_categorical_crossentropy(
                    y, net(x + delta, training=training), from_logits=True)
                value = tf.reduce_mean(ce)
            step = ATTACK.step_size * tf.sign(tape.gradient(value, delta))
            delta = tf.clip_by_value(delta + step, -ATTACK.eps, ATTACK.eps)
            delta = tf.clip_by_value(x + delta, 0.0, 1.0) - x
        adv = net(x + delta, training=False)
        clean = net(x, training=False)
        robust += float(tf.reduce_sum(tf.cast(tf.argmax(adv, -1, tf.int32) == y, tf.float32)))
        correct += float(tf.reduce_sum(tf.cast(tf.argmax(clean, -1, tf.int32) == y, tf.float32)))
        loss += float(tf.reduce_sum(tf.keras.losses.sparse_categorical_crossentropy(
            y, adv, from_logits=True)))
        n += len(y)
    return {"ra": 100 * robust / n, "sa": 100 * correct / n, "robust_loss": loss / n}


def test_split_evaluator_attacks_with_bn_in_inference_mode():
    net = _net()
    rng = np.random.default_rng(0)
    x = rng.random((16, 4, 4, 1), dtype=np.float32)
    y = np.asarray(net(x, training=False)).argmax(-1) % 3
    y[::3] = (y[::3] + 1) % 3
    batches = [(tf.constant(x[i:i + 8]), y[i:i + 8]) for i in (0, 8)]
    before = [v.numpy().copy() for v in net.get_layer("bn").non_trainable_weights]
    got = epoch_eval.SplitEvaluator(net, ATTACK, seed=4)(
        tf.data.Dataset.from_tensor_slices((x, y)).batch(8))
    for v, b in zip(net.get_layer("bn").non_trainable_weights, before):
        np.testing.assert_array_equal(v.numpy(), b)  # no BN statistics updated
    want = _reference(net, batches, 4, training=False)
    assert got["sa"] == pytest.approx(want["sa"]) and got["ra"] == pytest.approx(want["ra"])
    assert got["robust_loss"] == pytest.approx(want["robust_loss"], rel=1e-4)
    crafted_in_train_mode = _reference(net, batches, 4, training=True)
    assert abs(crafted_in_train_mode["robust_loss"] - got["robust_loss"]) > 1e-3


def test_finish_measures_train_ra_on_unaugmented_train_split_with_eval_attack(tmp_path,
                                                                               monkeypatch):
    seen = {}

    class Recorder:
        def __init__(self, net, attack, strategy=None, seed=0):
            seen.update(net=net, attack=attack, seed=seed)

        def __call__(self, dataset, progress=None):
            seen["dataset"] = dataset
            return {"ra": 61.0, "sa": 90.0}

    monkeypatch.setattr(epoch_eval, "SplitEvaluator", Recorder)
    monkeypatch.setattr(experiment.flop_count, "results_fields", lambda *a, **k: {})
    config = experiment.Config(eval_eps=4 / 255, eval_step_size=1 / 255, eval_steps=7, seed=9)
    splits = types.SimpleNamespace(train="augmented", train_eval="unaugmented", val="v", test="t")
    row = {"epoch": 1, "val_ra": 40.0, "test_ra": 41.0, "test_sa": 70.0, "train_ra": 55.0}
    exp = types.SimpleNamespace(config=config, history=[row], splits=splits, strategy=None,
                                smoothing=types.SimpleNamespace(results=lambda e, m: {}),
                                workdir=str(tmp_path), files=Workdir(tmp_path),
                                path=lambda name: str(tmp_path / name))
    plugin = types.SimpleNamespace(sparse=False, results=lambda e, m: {}, costs=lambda e, m: None,
                                   settings_record=lambda e: {})
    net = _net()
    results = experiment.finish(exp, plugin, types.SimpleNamespace(net=net), 1.0)
    assert seen["dataset"] == "unaugmented" and seen["net"] is net and seen["seed"] == 9
    assert seen["attack"] == AttackConfig(4 / 255, 1 / 255, 7, True, "eval")
    assert results["train_ra_final"] == 61.0 and results["rgg_final"] == pytest.approx(20.0)
