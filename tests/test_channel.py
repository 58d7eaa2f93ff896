"""Channel-level Flying Bird+ (Chase-style removal) and the physical shrink: UMM, schedule,
selection, budget redistribution, and a narrower model with the masked model's logits."""
import keras
import numpy as np
import pytest

import birds_tf
from birds_tf.export import shrink as shrink_lib
from birds_tf.models import preact_resnet
from birds_tf.sparsity import channel, masks
from birds_tf.training.adversarial import AdversarialModel, AttackConfig
from birds_tf.training.optimizer import TorchSGD, momentum_buffer


def test_umm_on_a_hand_made_kernel_counts_pruned_weights_as_zero():
    kernel = np.zeros((1, 1, 4, 2), np.float32)
    kernel[0, 0, :, 0] = [1.0, -2.0, 3.0, -4.0]
    kernel[0, 0, :, 1] = [8.0, 0.5, 0.5, 0.5]
    mask = np.ones_like(kernel)
    mask[0, 0, 3, 0] = 0  # -4 pruned
    mask[0, 0, 1:, 1] = 0  # only the 8 left
    # channel 0: (1 + 2 + 3 + 0) / 4; channel 1: 8 / 4 -- not the mean over the active ones.
    np.testing.assert_allclose(channel.umm(kernel, mask), [1.5, 2.0])
    np.testing.assert_allclose(channel.umm(kernel), [2.5, 2.375])


@pytest.mark.parametrize("step,expected", [(0, 0.0), (50, 0.5 * (1 - 0.5 ** 3)), (100, 0.5),
                                           (400, 0.5)])
def test_cubic_channel_schedule(step, expected):
    assert channel.channel_schedule(step, 400, 0.5, 0.0, 0.25) == pytest.approx(expected)
    # 240 removable channels: round(240 * s).
    sched = channel.ChannelSchedule(0.5, 0.0, 0.25)
    assert sched.target(step, 400, 240) == round(240 * expected)


def test_schedule_starts_late_and_bad_values_are_refused():
    assert channel.channel_schedule(99, 400, 0.5, 0.25, 0.5) == 0.0
    with pytest.raises(ValueError, match="channel_sparsity"):
        channel.ChannelSchedule(channel_sparsity=1.0)
    with pytest.raises(ValueError, match="start"):
        channel.ChannelSchedule(start=0.6, end=0.5)


def test_global_selection_respects_each_layers_floor():
    scores = [np.array([0.1, 0.2, 0.9, 0.05]), np.array([0.3, 0.01])]
    alive = [np.array([True, True, True, False]), np.array([True, True])]
    # Global order of alive ones: (1,1)=0.01, (0,0)=0.1, (0,1)=0.2, (1,0)=0.3, (0,2)=0.9; layer 1
    # keeps at least 1 and layer 0 at least 2 of its 3 alive.
    assert channel.select_channels(scores, alive, 3, [2, 1]) == [[0], [1]]
    assert channel.select_channels(scores, alive, 1, [1, 1]) == [[], [1]]
    assert channel.min_kept(64, 0.5, 0.5) == 16 and channel.min_kept(2, 0.9, 0.5) == 1


def test_proportional_shares_split_by_largest_remainder_and_respect_caps():
    np.testing.assert_array_equal(channel.proportional_shares(10, [1, 1, 2], [100] * 3),
                                  [3, 2, 5])  # 2.5, 2.5, 5: the first remainder wins the tie
    np.testing.assert_array_equal(channel.proportional_shares(10, [1, 1, 2], [100, 100, 1]),
                                  [5, 4, 1])


def _tiny(width=4, density=0.5, seed=0):
    net = preact_resnet.preact_resnet(preact_resnet._basic_block, (1, 1), 3, (8, 8, 1), [0.5],
                                      [0.25], (width, 2 * width), name="tiny")
    birds_tf.sparsity.init_sparse(net, density, "uniform", seed)
    rng = np.random.default_rng(seed)
    for layer in net.layers:  # BN in inference mode with non-trivial statistics
        if isinstance(layer, keras.layers.BatchNormalization):
            for w in layer.weights:
                w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
    return net


def test_removable_groups_are_the_first_conv_of_each_block_only():
    groups = channel.removable_groups(_tiny())
    assert [(p.name, c.name) for p, _, c in groups] == [
        ("layer1_0_conv1", "layer1_0_conv2"), ("layer2_0_conv1", "layer2_0_conv2")]


def test_removal_keeps_the_budget_kills_channels_and_never_regrows_them():
    net = _tiny(density=0.5)
    model = AdversarialModel(net, AttackConfig(eps=0.1, step_size=0.05, steps=1))
    model.compile(optimizer=TorchSGD(0.1, momentum=0.9))
    rng = np.random.default_rng(1)
    x = rng.random((8, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, 8).astype("int32")
    cb = channel.ChannelDynamicSparsity(
        plus=False, delta_t=1, total_steps=4, growth="random", seed=0,
        schedule=channel.ChannelSchedule(0.5, 0.0, 0.5, min_ratio=0.5))
    before = sum(masks.count_active(net).values())
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[cb])  # 4 steps, 4 updates
    # 4 + 8 removable channels, half of them gone by step 2 (cubic: round(12 * 0.5 * 7/8) = 5
    # after step 1, 6 from step 2 on), floors 1 and 2.
    assert [e["channels_removed_total"] for e in cb.channel_events] == [5, 6]
    assert cb.removed_count() == 6
    assert sum(masks.count_active(net).values()) == before  # budget redistributed
    dead = shrink_lib.dead_channels(net)
    assert dead == cb.removed
    by_name = {layer.name: layer for layer in masks.masked_layers(net)}
    for name, idx in cb.removed.items():
        kernel = by_name[name].kernel.numpy()
        assert not kernel[..., idx].any()
        buf = momentum_buffer(model.optimizer, by_name[name].kernel).numpy()
        assert not buf[..., idx].any()
    state = cb.get_state()
    fresh = channel.ChannelDynamicSparsity(plus=False, delta_t=1, total_steps=4,
                                           growth="random")
    fresh.set_state(state)
    assert fresh.removed == cb.removed and fresh.channel_events == cb.channel_events


def test_shrunk_model_has_the_masked_models_logits():
    net = _tiny(width=4, density=0.6, seed=2)
    remove = {"layer1_0_conv1": [0, 2], "layer2_0_conv1": [1, 5, 6]}
    groups = {p.name: c for p, _, c in channel.removable_groups(net)}
    for name, idx in remove.items():
        consumer = groups[name]
        mask = consumer.mask.numpy()
        mask[:, :, idx, :] = 0
        consumer.mask.assign(mask)  # the producer's filters stay: the slice alone kills them
    assert shrink_lib.dead_channels(net) == remove
    small = shrink_lib.shrink(net)
    assert not masks.masked_layers(small)
    assert small.get_layer("layer1_0_conv1").filters == 2
    assert small.get_layer("layer2_0_conv1").filters == 5
    assert small.get_layer("layer2_0_bn2").gamma.shape == (5,)
    assert small.get_layer("layer2_0_conv2").kernel.shape[2] == 5
    x = np.random.default_rng(3).random((6, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(np.asarray(small(x, training=False)),
                               np.asarray(net(x, training=False)), atol=1e-5, rtol=1e-5)


def test_shrink_refuses_dense_models_and_models_without_dead_channels():
    net = _tiny(density=1.0)
    with pytest.raises(ValueError, match="no removable channel"):
        shrink_lib.shrink(net)
    plain = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 3),
                              keras.layers.Conv2D(2, 1)])
    with pytest.raises(ValueError, match="dense"):
        shrink_lib.shrink(plain)
    with pytest.raises(ValueError, match="target sparsity 0"):
        shrink_lib.shrink_for_export(net, {"method": "dense", "target_sparsity": 0.0})


def test_layer_mean_scores_compare_channels_within_their_layer():
    umms = [np.array([1.0, 3.0]), np.array([0.1, 0.3, 100.0])]
    alive = [np.array([True, True]), np.array([True, True, False])]
    s = channel.channel_scores(umms, alive, "layer_mean")
    np.testing.assert_allclose(s[0], [0.5, 1.5])
    np.testing.assert_allclose(s[1], [0.5, 1.5, 500.0])
    assert channel.channel_scores(umms, alive, "global")[1][0] == 0.1
    with pytest.raises(ValueError, match="score"):
        channel.ChannelSchedule(score="l1")


def test_rebuild_waits_for_enough_pending_channels_or_the_final_count():
    cb = channel.ChannelDynamicSparsity(plus=False, shrink_during_training=True,
                                        shrink_min_fraction=0.1,
                                        schedule=channel.ChannelSchedule(0.5))
    cb._groups = [(type("P", (), {"name": "a"}), None)]
    cb.original_channels = {"a": 100}
    cb.removed = {"a": list(range(9))}
    assert not cb._rebuild_due()  # 9 of 100 pending, final count 50 not reached
    cb.removed = {"a": list(range(10))}
    assert cb._rebuild_due()
    cb.physical = {"a": list(range(45))}
    cb.removed = {"a": list(range(50))}
    assert cb._rebuild_due()  # only 5 pending, but the schedule is complete
    cb.physical = {"a": list(range(50))}
    assert not cb._rebuild_due()
    # shrink_at_target=False: the last 5 of the schedule wait (masked) instead of a rebuild
    cb.shrink_at_target = False
    cb.physical = {"a": list(range(45))}
    assert not cb._rebuild_due()
    cb.physical = {"a": list(range(40))}
    assert cb._rebuild_due()  # 10 of 100 pending: shrink_min_fraction still applies


def test_rebuilding_mid_run_is_refused_with_swa_or_loss_scaling():
    from types import SimpleNamespace as NS

    from birds_tf.experiment.flying_bird_channel import FlyingBirdPlusChannel
    config = NS(sparsity=0.8, seed=1, method="fb_plus_channel", mixed_precision=None)
    exp = NS(smoothing=NS(swa=NS(enabled=True)))
    with pytest.raises(ValueError, match="SWA"):
        FlyingBirdPlusChannel(config).run_main(exp, None, None)
    config.mixed_precision = "mixed_float16"
    exp.smoothing.swa.enabled = False
    with pytest.raises(ValueError, match="LossScaleOptimizer"):
        FlyingBirdPlusChannel(config).run_main(exp, None, None)
    with pytest.raises(ValueError, match="shrink_min_fraction"):
        FlyingBirdPlusChannel(config, shrink_min_fraction=2.0)
    with pytest.raises(ValueError, match="shrink_at_target must be True or False, got 'no'"):
        FlyingBirdPlusChannel(config, shrink_at_target="no")
