"""Flying Bird / Flying Bird+ mask updates: counts, selection, zeroing, replicas, resume."""
import json
import math
import os

import gin
import numpy as np
import pytest
import keras
import tensorflow as tf

import birds_tf
from birds_tf.sparsity import flying_bird as dynamic
from birds_tf.sparsity import masks
from birds_tf.training.adversarial import AdversarialModel, AttackConfig
from birds_tf.training.optimizer import TorchSGD, momentum_buffer
from tests import cifar_mock
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
    # Values of the reference's CosineDecay (sparselearning/core.py) over T = 352 * 200
    # iterations.
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
    assert np.flatnonzero(new).tolist() == [0, 1, 3, 5, 6]
    # Index 1 was pruned and regrown: it was active in the last topology, so it is not a new
    # connection and keeps its value (as in the authors' code); only index 5 restarts from zero.
    assert np.flatnonzero(grown).tolist() == [5]
    assert np.flatnonzero(pruned).tolist() == [4]
    # The named option restores the restart of regrown weights.
    _, _, reset = dynamic.update_layer_mask(weights, mask, grad, k=0.4, reset_regrown=True)
    assert np.flatnonzero(reset).tolist() == [1, 5]


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
        # Survivors keep their values, including a weight pruned and regrown in the same update
        # (only connections absent from the last topology start from zero).
        kept = (old_mask == 1) & (mask == 1)
        np.testing.assert_array_equal(kernel[kept], old_kernel[kept])
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


def _resume_run(net, epochs, initial_epoch=0, state=None, ckpt=None, save_to=None,
                growth="random"):
    model = _trainer(net)
    model.optimizer.build(model.trainable_variables)
    cb = birds_tf.DynamicSparsity(plus=True, delta_t=3, total_steps=16, growth=growth,
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


@pytest.mark.parametrize("growth", ["random", "random_bernoulli"])
def test_checkpoint_between_updates_resumes_with_the_same_masks_and_queues(tmp_path, growth):
    masks_a, cb_a, saved = _resume_run(_sparse_net(0.5, seed=3), epochs=4,
                                       save_to=str(tmp_path / "ckpt"), growth=growth)
    assert saved["state"]["step"] % 3 != 0  # taken between two updates
    masks_b, cb_b, _ = _resume_run(_sparse_net(0.5, seed=9), epochs=4, initial_epoch=2,
                                   state=saved["state"], ckpt=saved["ckpt"], growth=growth)
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
    with cifar_mock.mock():
        results = train.run(["gin/table1/fb_plus_resnet18.gin"], bindings, str(tmp_path / "fbp"),
                            verbose=0)
    assert results["method"] == "fb_plus" and results["dataset"] == "cifar10"
    assert results["final_sparsity"] == pytest.approx(0.8, abs=0.01)
    assert len(results["density_trajectory"]) == 2
    assert results["mask_updates"] == 4
    # The algorithm's settings reach results.json: the bindings above, the config's, defaults.
    on_disk = json.loads((tmp_path / "fbp" / "results.json").read_text())
    settings = on_disk["method_settings"]
    assert settings["delta_t"] == 1 and settings["t_start"] == 1
    assert settings["threshold"] == 0.75 and settings["queue_length"] == 5
    assert settings["prune_ratio"] == 0.4 and settings["growth_ratio"] == 0.05
    assert settings["distribution"] == "igq" and settings["prune_ties"] == "exact"
    assert settings["total_steps"] == 4  # 2 epochs x (16 examples / batch 8)


@pytest.mark.parametrize("binding,match", [
    ("FlyingBird.distribution = 'lognormal'", "Unknown sparsity distribution 'lognormal'"),
    ("train_eval.sparsity = -0.1", r"sparsity must be in \[0, 1\)"),
    ("train_eval.sparsity = 0.0", "needs a target sparsity"),
    ("DynamicSparsity.delta_t = 0", "delta_t must be an integer >= 1, got 0"),
    ("DynamicSparsity.queue_length = 1", "queue_length must be an integer >= 2"),
    ("DynamicSparsity.growth = 'bernoulli'", "Unknown growth mode 'bernoulli'"),
    ("DynamicSparsity.gradient_topk = 'active'", "Unknown gradient_topk 'active'"),
])
def test_bad_fb_config_is_refused_before_training(tmp_path, _gin_root, binding, match):
    from launch import train
    with pytest.raises(ValueError, match=match):
        train.run(["gin/table1/fb_resnet18.gin", "gin/quickstart/smoke.gin"], [binding],
                  str(tmp_path / "w"), verbose=0)
    assert not (tmp_path / "w" / "metrics.csv").exists()


# ------------------------------------------------------------------------------------------------
# issue 14: regrown weights, ties, triggers, seeds, the dense gradient, delta_t_late

def _fitted(density=0.5, seed=0):
    """A tiny sparse net after one epoch of PGD-AT (non-zero momentum) with its trainer."""
    net = _sparse_net(density, seed)
    model = _trainer(net)
    x, y = _data(8)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    return net, model


@pytest.mark.parametrize("reset_regrown", [False, True])
def test_weights_pruned_and_regrown_in_one_update_keep_value_and_momentum(reset_regrown):
    net, model = _fitted()
    layer = masks.masked_layers(net)[0]
    mask = layer.mask.numpy()
    kernel = layer.kernel.numpy()
    buf = momentum_buffer(model.optimizer, layer.kernel).numpy()
    # Growth scores favour exactly the weights the prune step drops (the smallest active ones),
    # so every pruned weight is regrown and the topology does not change.
    score = np.where(mask > 0, 1.0 / (np.abs(kernel) + 1e-6), 0.0).astype("float32")
    model.enable_dense_gradients()
    model.dense_gradient = lambda lyr: tf.constant(score if lyr is layer else np.zeros(
        lyr.kernel.shape, "float32"))
    cb = birds_tf.DynamicSparsity(delta_t=1000, total_steps=100, reset_regrown=reset_regrown)
    cb.set_model(model)
    cb.step = 10  # k ~ 0.49: about half of the active weights are pruned and regrown
    cb.update_masks()
    regrown = mask > 0
    regrown[...] = False
    active = np.flatnonzero(mask.reshape(-1) > 0)
    k = dynamic.cosine_k(10, 100)
    dropped = active[np.argsort(np.abs(kernel.reshape(-1)[active]), kind="stable")]
    dropped = dropped[:math.ceil(k * active.size)]
    regrown.reshape(-1)[dropped] = True
    np.testing.assert_array_equal(layer.mask.numpy(), mask)
    new_kernel = layer.kernel.numpy()
    new_buf = momentum_buffer(model.optimizer, layer.kernel).numpy()
    assert regrown.sum() > 5 and np.all(kernel[regrown] != 0) and np.all(buf[regrown] != 0)
    if reset_regrown:
        assert np.all(new_kernel[regrown] == 0) and np.all(new_buf[regrown] == 0)
        np.testing.assert_array_equal(new_kernel[~regrown], kernel[~regrown])
    else:
        np.testing.assert_array_equal(new_kernel, kernel)
        np.testing.assert_array_equal(new_buf, buf)


def test_reference_tie_rule_drops_every_tied_weight_and_regrows_as_many():
    weights = np.array([0.1, 0.0, 0.1, 0.5, 0.0, 0.9, 0.1, 0.0, 0.3, 0.0])
    mask = np.array([1, 0, 1, 1, 0, 1, 1, 0, 1, 0], np.float32)  # nnz 6, 4 zeros
    grad = np.array([0, 1, 2, 3, 4, 5, 0, 7, 8, 9], np.float64)
    # k = 0.3: regular count ceil(1.8) = 2; prune-more extra ceil(0.4 * 0.3 * 6) = 1.
    # Paper default: exactly 2 pruned (the 0.1-ties broken by position: 0 and 2), 2 regrown
    # (largest |grad| among 0, 1, 2, 4, 7, 9: 9 and 7).
    new, pruned, grown = dynamic.update_layer_mask(weights, mask, grad, k=0.3)
    assert np.flatnonzero(new).tolist() == [3, 5, 6, 7, 8, 9]
    assert np.flatnonzero(pruned).tolist() == [0, 2] and np.flatnonzero(grown).tolist() == [7, 9]
    # Reference: thr = sorted(|w|)[4 + 2 - 1] = 0.1 and keep |w| > 0.1, so all three 0.1s go
    # (0, 2, 6); growth regrows as many as dropped, 3, among 0, 1, 2, 4, 6, 7, 9: 9, 7, 4.
    new, pruned, grown = dynamic.update_layer_mask(weights, mask, grad, k=0.3,
                                                   prune_ties="threshold")
    assert np.flatnonzero(new).tolist() == [3, 4, 5, 7, 8, 9]
    assert np.flatnonzero(pruned).tolist() == [0, 2, 6]
    assert np.flatnonzero(grown).tolist() == [4, 7, 9]
    # FB+ prune-more: exact removes 2 + 1 = 3 and grows 2 (net -1); the reference's threshold
    # sorted(|w|)[4 + 3 - 1] is still 0.1, it drops the same 3 and regrows 3 (net 0).
    new, _, _ = dynamic.update_layer_mask(weights, mask, grad, k=0.3, prune_more=True)
    assert np.flatnonzero(new).tolist() == [3, 5, 7, 8, 9]
    new, _, _ = dynamic.update_layer_mask(weights, mask, grad, k=0.3, prune_more=True,
                                          prune_ties="threshold")
    assert np.flatnonzero(new).tolist() == [3, 4, 5, 7, 8, 9]
    # Without ties at the threshold both rules agree, prune-more included.
    distinct = weights + np.arange(10) * 1e-3 * mask
    for more in (False, True):
        a = dynamic.update_layer_mask(distinct, mask, grad, 0.3, prune_more=more)
        b = dynamic.update_layer_mask(distinct, mask, grad, 0.3, prune_more=more,
                                      prune_ties="threshold")
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="Unknown prune_ties 'random'"):
        dynamic.update_layer_mask(weights, mask, grad, k=0.3, prune_ties="random")
    with pytest.raises(ValueError, match="Unknown prune_ties 'random'"):
        birds_tf.DynamicSparsity(prune_ties="random")


def test_fb_plus_triggers_window_comparisons_and_threshold():
    up3 = [1.0, 2.0, 3.0, 3.0, 4.0]    # 3 of 4 differences increase
    up2 = [1.0, 2.0, 1.0, 0.0, 5.0]    # 2 of 4 (also with '>=')
    flat = [1.0, 1.0, 1.0, 1.0, 1.0]
    # The paper's reading (default threshold 0.75): at least 3 of the 4 differences.
    assert dynamic.fb_plus_triggers(up3, up2) == (True, False)
    assert dynamic.fb_plus_triggers(up2, up3) == (False, True)
    # The reference's epsilon 0.5: 2 of 4 suffice.
    assert dynamic.fb_plus_triggers(up2, up2, threshold=0.5) == (True, True)
    # Strict '>' for the gap, '>=' for the validation loss: a flat series only grows.
    assert dynamic.fb_plus_triggers(flat, flat) == (False, True)
    assert dynamic.increasing_fraction(flat, strict=True) == 0.0
    assert dynamic.increasing_fraction(flat, strict=False) == 1.0
    # Only the last 5 values count: an old rise outside the window does not trigger ...
    rising_then_not = [float(v) for v in range(10)] + [8.0, 9.0, 8.0, 7.0]  # 10 of 13 rise
    assert dynamic.increasing_fraction(rising_then_not, strict=True) > 0.75
    assert dynamic.fb_plus_triggers(rising_then_not, flat) == (False, True)  # last 5: 1 of 4
    # ... and fewer than 5 values never do.
    assert dynamic.fb_plus_triggers([1.0, 2.0, 3.0, 4.0], [1.0] * 4) == (False, False)


class _History(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rows = []

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append((logs["prune_more"], logs["grow_more"]))


def test_fb_plus_triggers_only_from_t_start_which_defaults_to_half_the_epochs():
    net = _sparse_net(0.5)
    model = _trainer(net)
    cb = birds_tf.DynamicSparsity(plus=True, delta_t=1000, growth="random", queue_length=2)
    history = _History()
    x, y = _data(4)
    # A rising gap and a flat loss every epoch: both triggers hold once the 2-value queue is full
    # (from epoch index 2 on), but t_start defaults to 7 // 2 = 3.
    model.fit(x, y, batch_size=4, epochs=7, verbose=0, callbacks=[_FakeEpochLogs(), cb, history])
    assert cb.t_start == 3
    assert history.rows == [(0.0, 0.0)] * 3 + [(1.0, 1.0)] * 4


def test_official_code_config_binds_the_reference_values_and_its_update_steps(_gin_root):
    from launch import common
    common.parse_gin(["gin/table1/fb_plus_resnet18.gin"], [])
    from birds_tf.experiment.flying_bird import DynamicSparsity  # with gin's bindings
    paper = DynamicSparsity(plus=True)
    assert (paper.threshold, paper.prune_ties, paper.growth, paper.reset_regrown) == \
        (0.75, "exact", "gradient", False)
    gin.clear_config()
    common.parse_gin(["gin/table1/fb_plus_resnet18_official_code.gin"], [])
    cb = DynamicSparsity(plus=True)
    assert (cb.threshold, cb.prune_ties, cb.growth, cb.gradient_topk) == \
        (0.5, "threshold", "random_bernoulli", "all")
    # Drive the schedule of the reference's CIFAR run (352 iterations x 200 epochs) without a
    # model: updates every 900 iterations up to 0-indexed epoch 100, then every 1200
    # (main_adv.py's --dynamic_fre: 39 + 29 = 68 updates).
    steps = []
    cb.update_masks = lambda: steps.append((cb.epoch, cb.step))
    cb.set_params({"epochs": 200, "steps": 352})
    for epoch in range(200):
        cb.on_epoch_begin(epoch)
        for _ in range(352):
            cb.on_train_batch_end(0)
    early = [s for e, s in steps if e <= 100]
    late = [s for e, s in steps if e > 100]
    assert early == list(range(900, 101 * 352 + 1, 900)) and len(early) == 39
    assert late == list(range(36000, 70400 + 1, 1200)) and len(late) == 29


def test_random_growth_seed_follows_the_run_seed():
    from types import SimpleNamespace
    from birds_tf.experiment.flying_bird import FlyingBirdPlus
    draws = {}
    for seed in (1, 2, 1):
        method = FlyingBirdPlus(SimpleNamespace(sparsity=0.8, seed=seed, method="fb_plus"))
        cb = method.callbacks(None, None, None)[0]
        assert cb.seed == seed
        draws.setdefault(seed, []).append(cb._rng.integers(0, 2**31, 4).tolist())
    assert draws[1][0] == draws[1][1] and draws[1][0] != draws[2][0]
    # An explicit DynamicSparsity.seed wins over the run's.
    with gin.config_scope(None):
        gin.bind_parameter("DynamicSparsity.seed", 5)
        try:
            cb = FlyingBirdPlus(SimpleNamespace(sparsity=0.8, seed=1, method="fb_plus")
                                ).callbacks(None, None, None)[0]
        finally:
            gin.clear_config()
    assert cb.seed == 5


def _independent_dense_gradients(net, x, y, eps, step_size, steps):
    """PGD without random start and the CE gradient w.r.t. kernel * mask, by hand in TF ops."""
    conv, dense = masks.masked_layers(net)
    wc = tf.constant(conv.kernel.numpy() * conv.mask.numpy())
    wd = tf.constant(dense.kernel.numpy() * dense.mask.numpy())
    bc, bd = tf.constant(conv.bias.numpy()), tf.constant(dense.bias.numpy())

    def logits(inputs, wc, wd):
        h = tf.nn.relu(tf.nn.conv2d(inputs, wc, 1, "VALID") + bc)
        return tf.matmul(tf.reshape(h, [tf.shape(h)[0], -1]), wd) + bd

    def loss(inputs, wc, wd):
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            y, logits(inputs, wc, wd)))

    x = tf.constant(x)
    x_adv = x
    for _ in range(steps):
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            value = loss(x_adv, wc, wd)
        x_adv = x_adv + step_size * tf.sign(tape.gradient(value, x_adv))
        x_adv = tf.clip_by_value(tf.clip_by_value(x_adv, x - eps, x + eps), 0.0, 1.0)
    with tf.GradientTape() as tape:
        tape.watch([wc, wd])
        value = loss(x_adv, wc, wd)
    return dict(zip((conv.name, dense.name), tape.gradient(value, [wc, wd])))


def test_captured_dense_gradient_is_the_adversarial_loss_gradient_wrt_kernel_times_mask():
    net = _sparse_net(0.4)
    model = _trainer(net)  # PGD-2, eps 0.1, step 0.03, no random start
    model.enable_dense_gradients()
    x, y = _data(8)
    expected = _independent_dense_gradients(net, x, y, 0.1, 0.03, 2)  # before the step
    model.request_dense_gradients(True)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    for layer in masks.masked_layers(net):
        got = model.dense_gradient(layer).numpy()
        want = expected[layer.name].numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
        inactive = layer.mask.numpy() == 0
        assert np.count_nonzero(got[inactive]) > 0.5 * inactive.sum(), layer.name


def test_early_bird_mask_ignores_the_fc_layer():
    from birds_tf.sparsity import magnitude
    net = _sparse_net(1.0)
    conv, dense = masks.masked_layers(net)
    dense.kernel.assign(np.full(dense.kernel.shape, 100.0, "float32"))  # would win every slot
    got = magnitude.global_magnitude_masks(net, 0.3, layer_filter="conv", rule="early_bird")
    assert list(got) == [conv.name]
    w = np.abs(conv.kernel.numpy()).ravel()
    threshold = np.sort(w)[int(w.size * 0.7)]  # EarlyBird: thre = sorted(|w|)[int(N * s)]
    np.testing.assert_array_equal(got[conv.name].ravel(), (w > threshold).astype("float32"))


@pytest.mark.parametrize("prune_ties", ["threshold", "exact"])
def test_random_grow_more_grows_the_references_expected_count(prune_ties):
    # The reference grows each inactive position with probability min(1.05 x, n) / n
    # (random_growth), so its expected count is 1.05 x. Here x = ceil(0.3 * 14) = 5 (distinct
    # magnitudes, no ties): 5.25 on average, never int(5.25) = 5 every time (grow-more would then
    # do nothing).
    weights = np.linspace(0.1, 1.4, 14)
    weights = np.concatenate([weights, np.zeros(26)])
    mask = (weights > 0).astype(np.float32)
    rng = np.random.default_rng(0)
    counts = []
    for _ in range(4000):
        new, _, _ = dynamic.update_layer_mask(weights, mask, None, k=0.3, grow_more=True,
                                              growth="random", rng=rng, prune_ties=prune_ties)
        counts.append(int(new.sum()) - (14 - 5))
    counts = np.asarray(counts)
    assert set(np.unique(counts)) == {5, 6}  # an exact count up to one
    assert abs(counts.mean() - 5.25) < 0.03, counts.mean()
    # Without grow-more, exactly the regular count; the capacity cap still holds.
    new, _, _ = dynamic.update_layer_mask(weights, mask, None, k=0.3, growth="random", rng=rng,
                                          prune_ties=prune_ties)
    assert int(new.sum()) == 14
    assert dynamic.random_grow_more_count(40, 0.05, 41, rng) == 41
    assert dynamic.random_grow_more_count(20, 0.05, 100, rng) == 21
