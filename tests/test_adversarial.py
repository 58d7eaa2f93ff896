"""AdversarialModel: training step semantics and MirroredStrategy equivalence."""
import numpy as np
import pytest
import keras
import tensorflow as tf

import birds_tf
from birds_tf.training.adversarial import AdversarialModel, AttackConfig
from birds_tf.training.optimizer import TorchSGD
from conftest import mirrored


def _net():
    # No BatchNorm: per-replica batch statistics would (rightly) differ from one device's.
    net = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                            keras.layers.Flatten(), keras.layers.Dense(3)])
    return birds_tf.sparsify(net)


def _data():
    rng = np.random.default_rng(0)
    return rng.random((8, 6, 6, 1)).astype("float32"), rng.integers(0, 3, 8).astype("int32")


def _one_step(strategy, weights):
    x, y = _data()
    with strategy.scope():
        net = _net()
        net.set_weights(weights)
        model = AdversarialModel(net, AttackConfig(eps=0.1, step_size=0.03, steps=3,
                                                   random_start=False))
        model.compile(optimizer=TorchSGD(0.1, momentum=0.9, l2=5e-4))
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    model.fit(ds, epochs=1, verbose=0)
    return net.get_weights()


def test_one_step_under_mirrored_equals_one_device(two_cpus):
    weights = _net().get_weights()
    single = _one_step(tf.distribute.get_strategy(), weights)
    on_two = _one_step(mirrored(two_cpus), weights)
    for a, b, w0 in zip(single, on_two, weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert any(not np.allclose(a, w0) for a, w0 in zip(single, weights))


def test_train_step_is_sgd_on_the_pgd_examples():
    """The update equals TorchSGD applied to the CE gradient at the PGD-crafted batch."""
    x, y = _data()
    net = _net()
    w0 = net.get_weights()
    attack = AttackConfig(eps=0.1, step_size=0.03, steps=3, random_start=False)
    x_adv = birds_tf.attacks.pgd_linf(net, x, y, eps=0.1, step_size=0.03, steps=3,
                                      random_start=False)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=y, logits=net(x_adv, training=True)))
    grads = tape.gradient(loss, net.trainable_variables)
    expected = [w.numpy() - 0.1 * (g.numpy() + 5e-4 * w.numpy())
                for w, g in zip(net.trainable_variables, grads)]
    model = AdversarialModel(net, attack)
    model.compile(optimizer=TorchSGD(0.1, momentum=0.9, l2=5e-4))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    for var, want in zip(net.trainable_variables, expected):
        np.testing.assert_allclose(var.numpy(), want, rtol=1e-5, atol=1e-6)
    assert len(w0) == len(net.get_weights())


def test_training_reports_running_adversarial_accuracy():
    x, y = _data()
    model = AdversarialModel(_net(), AttackConfig(eps=0.1, step_size=0.03, steps=2))
    model.compile(optimizer=TorchSGD(0.01))
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert set(history.history) >= {"loss", "ra"}
    assert 0.0 <= history.history["ra"][0] <= 1.0


def test_jit_compile_step_matches_eager_graph_step():
    x, y = _data()
    weights = _net().get_weights()
    results = []
    for jit in (False, True):
        net = _net()
        net.set_weights(weights)
        model = AdversarialModel(net, AttackConfig(eps=0.1, step_size=0.03, steps=2,
                                                   random_start=False))
        model.compile(optimizer=TorchSGD(0.1), jit_compile=jit)
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        results.append(net.get_weights())
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)




@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_step_runs_and_keeps_float32_masks(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        net = birds_tf.models.build("preact_resnet18", 3, (8, 8, 1), width=4)
        birds_tf.sparsity.init_sparse(net, 0.5, "uniform", 0)
        model = AdversarialModel(net, AttackConfig(eps=0.1, step_size=0.03, steps=2))
        optimizer = TorchSGD(0.05)
        if policy == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        model.compile(optimizer=optimizer)
        cb = birds_tf.DynamicSparsity(delta_t=1, total_steps=4)
        x, y = _data()
        x = x[..., :1][:, :6, :6]
        x = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        history = model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[cb])
        assert np.isfinite(history.history["loss"][0])
        assert net.get_layer("linear").kernel.dtype == "float32"
        assert birds_tf.sparsity.global_density(net) == pytest.approx(0.5, abs=0.01)
        assert cb.updates == 2
    finally:
        keras.mixed_precision.set_global_policy("float32")
