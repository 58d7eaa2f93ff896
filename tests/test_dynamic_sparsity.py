"""Flying Bird / Flying Bird+ mask updates: counts, selection, zeroing, replicas, resume."""
import math
import os

import gin
import numpy as np
import pytest
import keras
import tensorflow as tf
import tensorflow_datasets as tfds

import birds_tf
from birds_tf.sparsity import dynamic, masks
from birds_tf.training.adversarial import AdversarialModel, AttackConfig
from birds_tf.training.optimizer import TorchSGD, momentum_buffer
from conftest import mirrored

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sparse_net(density=0.5, seed=0):
    net = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                            keras.layers.Flatten(), keras.layers.Dense(3)])
    net = birds_tf.sparsify(net)
    birds_tf.sparsity.init_sparse(net, density, "uniform", seed)
    return net


def _data(n=16):
    rng = np.random.default_rng(0)
    return rng.random((n, 6, 6, 1)).astype("float32"), rng.integers(0, 3, n).astype("int32")


def _trainer(net, strategy=None):
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = AdversarialModel(net, AttackConfig(eps=0.1, step_size=0.03, steps=2,
                                                   random_start=False))
        model.compile(optimizer=TorchSGD(0.1, momentum=0.9, l2=5e-4))
    return model


@pytest.mark.parametrize("t,k", [(900, 0.4998), (18000, 0.4244), (35100, 0.2536),
                                 (48000, 0.1187), (69600, 0.0052)])
def test_k_follows_the_cosine_schedule(t, k):
    # Values of the reference's CosineDecay over T = 352 * 200 iterations (notes, section 2.5).
    assert dynamic.cosine_k(t, 352 * 200) == pytest.approx(k, abs=5e-5)
    by_hand = 0.005 + (0.5 - 0.005) * (1 + math.cos(math.pi * t / 70400)) / 2
    assert dynamic.cosine_k(t, 70400) == pytest.approx(by_hand, rel=1e-12)


def test_prune_by_magnitude_and_grow_by_gradient_on_a_hand_layer():
    weights = np.array([0.9, -0.05, 0.0, 0.4, -0.02, 0.0, 0.7, 0.0])
    mask = np.array([1, 1, 0, 1, 1, 0, 1, 0], np.float32)
    grad = np.array([0.0, 5.0, 0.3, 0.0, 0.1, 2.0, 0.0, 1.0])
    # nnz = 5, k = 0.4 -> ceil(2.0) = 2 pruned: the smallest |w| among active are idx 4, 1.
    new, pruned, grown = dynamic.update_layer_mask(weights, mask, grad, k=0.4)
    assert np.flatnonzero(pruned).tolist() == [4] or np.flatnonzero(pruned).tolist() == [1, 4]
    # Candidates after pruning: 1, 2, 4, 5, 7; the two largest |grad| are 1 (5.0) and 5 (2.0).
    assert sorted(np.flatnonzero(grown).tolist()) == [1, 5]
    assert np.flatnonzero(new).tolist() == [0, 1, 3, 5, 6]
    # Index 1 was pruned and regrown: it restarts from zero, so it counts as grown.
    assert np.flatnonzero(pruned).tolist() == [4]


@pytest.mark.parametrize("prune_more,grow_more", [(False, False), (True, False), (False, True),
                                                  (True, True)])
def test_fb_plus_changes_each_layer_by_exactly_the_rule(prune_more, grow_more):
    net = _sparse_net(0.5)
    model = _trainer(net)
    cb = birds_tf.DynamicSparsity(plus=True, delta_t=1000, total_steps=100, growth="gradient")
    x, y = _data()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[cb])  # builds, records nothing
    cb.step = 30
    k = 0.005 + 0.495 * (1 + math.cos(math.pi * 30 / 100)) / 2
    before = masks.count_active(net)
    cb.prune_more, cb.grow_more = prune_more, grow_more
    model.request_dense_gradients(True)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    cb.update_masks()
    after = masks.count_active(net)
    for layer in masks.masked_layers(net):
        nnz = before[layer.name]
        regular = math.ceil(k * nnz)
        removed = regular + (math.ceil(0.4 * k * nnz) if prune_more else 0)
        grown = int(regular * 1.05) if grow_more else regular
        assert after[layer.name] - nnz == grown - removed, layer.name


def test_fb_update_keeps_counts_zeroes_pruned_and_grown_weights_and_momentum():
    net = _sparse_net(0.4)
    model = _trainer(net)
    kernels_before = {}

    class Snapshot(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:  # the update of step 3 runs in the callback after this one
                for layer in masks.masked_layers(net):
                    kernels_before[layer.name] = (layer.kernel.numpy().copy(),
                                                  layer.mask.numpy().copy())

    cb = birds_tf.DynamicSparsity(delta_t=3, total_steps=40)
    before = masks.count_active(net)
    x, y = _data(12)  # three steps: the update after step 3 is the last thing that happens
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[Snapshot(), cb])
    assert cb.updates == 1
    assert masks.count_active(net) == before
    changed = False
    for layer in masks.masked_layers(net):
        kernel, mask = layer.kernel.numpy(), layer.mask.numpy()
        old_kernel, old_mask = kernels_before[layer.name]
        grown = (old_mask == 0) & (mask == 1)
        changed |= bool(grown.any())
        buf = momentum_buffer(model.optimizer, layer.kernel).numpy()
        # Every inactive weight and its momentum are zero; grown ones start from zero too.
        assert np.all(kernel[mask == 0] == 0) and np.all(buf[mask == 0] == 0)
        assert np.all(kernel[grown] == 0) and np.all(buf[grown] == 0)
        # Survivors keep their values; a weight pruned and regrown in the same update restarts
        # from zero (the paper's zero init for new connections).
        kept = (old_mask == 1) & (mask == 1)
        same = kernel[kept] == old_kernel[kept]
        assert np.all(same | (kernel[kept] == 0)) and same.mean() > 0.5
    assert changed


def test_replicas_hold_identical_masks_after_updates(two_cpus):
    strategy = mirrored(two_cpus)
    with strategy.scope():
        net = _sparse_net(0.3)
    model = _trainer(net, strategy)
    cb = birds_tf.DynamicSparsity(plus=False, delta_t=2, total_steps=20)
    before = masks.get_masks(net)
    x, y = _data(16)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    model.fit(ds, epochs=2, verbose=0, callbacks=[cb])
    assert cb.updates == 2
    moved = False
    for layer in masks.masked_layers(net):
        replicas = [v.numpy() for v in layer.mask.value.values]
        kernels = [v.numpy() for v in layer.kernel.value.values]
        assert len(replicas) == 2
        np.testing.assert_array_equal(replicas[0], replicas[1])
        np.testing.assert_allclose(kernels[0], kernels[1], rtol=1e-6)
        moved |= not np.array_equal(replicas[0], before[layer.name])
    assert moved


class _FakeEpochLogs(keras.callbacks.Callback):
    """Stands in for the evaluation callback: a rising gap and a flat validation loss."""

    def on_epoch_end(self, epoch, logs=None):
        logs.update(train_ra=50.0 + 3 * epoch, val_ra=40.0, val_robust_loss=1.0)


def _resume_run(net, epochs, initial_epoch=0, state=None, ckpt=None, save_to=None):
    model = _trainer(net)
    model.optimizer.build(model.trainable_variables)
    cb = birds_tf.DynamicSparsity(plus=True, delta_t=3, total_steps=16, growth="random",
                                  t_start=1, queue_length=2, seed=7)
    cb.set_model(model)
    if ckpt is not None:
        tf.train.Checkpoint(model=model, optimizer=model.optimizer).restore(ckpt)
        cb.set_state(state)
    saved = {}

    class Save(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if save_to and epoch == 1:
                saved["ckpt"] = tf.train.Checkpoint(model=model, optimizer=model.optimizer
                                                    ).write(save_to)
                saved["state"] = cb.get_state()

    x, y = _data(16)
    model.fit(x, y, batch_size=4, epochs=epochs, initial_epoch=initial_epoch, shuffle=False,
              verbose=0, callbacks=[_FakeEpochLogs(), cb, Save()])
    return masks.get_masks(net), cb, saved


def test_checkpoint_between_updates_resumes_with_the_same_masks_and_queues(tmp_path):
    masks_a, cb_a, saved = _resume_run(_sparse_net(0.5, seed=3), epochs=4,
                                       save_to=str(tmp_path / "ckpt"))
    assert saved["state"]["step"] % 3 != 0  # taken between two updates
    masks_b, cb_b, _ = _resume_run(_sparse_net(0.5, seed=9), epochs=4, initial_epoch=2,
                                   state=saved["state"], ckpt=saved["ckpt"])
    assert cb_a.step == cb_b.step == 16 and cb_a.updates == cb_b.updates == 5
    assert list(cb_a.gaps) == list(cb_b.gaps) and list(cb_a.losses) == list(cb_b.losses)
    assert any(e["prune_more"] for e in cb_a.events)
    assert cb_a.events == cb_b.events
    for mask_a, mask_b in zip(masks_a.values(), masks_b.values()):  # names differ per instance
        np.testing.assert_array_equal(mask_a, mask_b)


@pytest.mark.parametrize("kwargs,match", [
    ({"delta_t": 0}, "delta_t must be an integer >= 1, got 0"),
    ({"queue_length": 1}, "queue_length must be an integer >= 2, got 1"),
    ({"growth": "momentum"}, "Unknown growth mode 'momentum'"),
    ({"k_init": 1.5}, "k_init"),
    ({"threshold": 2.0}, "threshold must be in"),
])
def test_bad_callback_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        birds_tf.DynamicSparsity(**kwargs)


def test_gradient_growth_needs_the_adversarial_trainer():
    net = _sparse_net()
    net.compile(optimizer="sgd", loss="mse")
    cb = birds_tf.DynamicSparsity()
    with pytest.raises(ValueError, match="AdversarialModel.*growth='random'"):
        cb.set_model(net)


@pytest.fixture
def _gin_root(monkeypatch):
    monkeypatch.chdir(ROOT)
    gin.clear_config()
    yield
    gin.clear_config()


def test_fb_plus_config_runs_on_mock_cifar_and_reports_density(tmp_path, _gin_root):
    from launch import train
    bindings = ["train_eval.arch_kwargs = {'width': 4}", "train_eval.epochs = 2",
                "train_eval.batch_size = 8", "train_eval.max_train = 16",
                "train_eval.max_eval = 8", "train_eval.train_steps = 1",
                "train_eval.eval_steps = 1", "train_eval.milestones = ()",
                "DynamicSparsity.delta_t = 1", "DynamicSparsity.t_start = 1"]
    with tfds.testing.mock_data(num_examples=24):
        results = train.run(["gin/fb_plus_resnet18.gin"], bindings, str(tmp_path / "fbp"),
                            verbose=0)
    assert results["method"] == "fb_plus" and results["dataset"] == "cifar10"
    assert results["final_sparsity"] == pytest.approx(0.8, abs=0.01)
    assert len(results["density_trajectory"]) == 2
    assert results["mask_updates"] == 4


@pytest.mark.parametrize("binding,match", [
    ("FlyingBird.distribution = 'lognormal'", "Unknown sparsity distribution 'lognormal'"),
    ("train_eval.sparsity = -0.1", r"sparsity must be in \[0, 1\)"),
    ("train_eval.sparsity = 0.0", "needs a target sparsity"),
    ("DynamicSparsity.delta_t = 0", "delta_t must be an integer >= 1, got 0"),
    ("DynamicSparsity.queue_length = 1", "queue_length must be an integer >= 2"),
])
def test_bad_fb_config_is_refused_before_training(tmp_path, _gin_root, binding, match):
    from launch import train
    with pytest.raises(ValueError, match=match):
        train.run(["gin/fb_resnet18.gin", "gin/smoke.gin"], [binding], str(tmp_path / "w"),
                  verbose=0)
    assert not (tmp_path / "w" / "metrics.csv").exists()
