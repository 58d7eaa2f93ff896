"""FLOPs counter: hand counts, the reference PreActResNet-18 figure, masks, and the paper's
training-FLOPs relation (docs/flops.md, "Why the two training figures differ")."""
import keras
import numpy as np
import pytest

import birds_tf
from birds_tf.layers import MaskedConv2D, MaskedDense, Normalize
from birds_tf.sparsity import masks as masks_lib


def _small_net():
    inputs = keras.Input((6, 6, 2))
    x = Normalize((0.5, 0.5), (0.25, 0.25), name="norm")(inputs)
    a = MaskedConv2D(3, 3, use_bias=False, name="a")(x)                # 4x4x3
    b = keras.layers.Conv2D(3, 3, use_bias=True, name="b")(x)          # plain, with bias
    s = keras.layers.Add(name="add")([a, b])
    s = keras.layers.BatchNormalization(name="bn")(s)
    s = keras.layers.ReLU(name="relu")(s)
    p = keras.layers.GlobalAveragePooling2D(name="pool")(s)
    out = MaskedDense(5, name="fc")(p)
    return keras.Model(inputs, out)


def test_small_conv_net_matches_a_hand_count():
    counted = birds_tf.flops.count(_small_net())
    by_name = {layer.name: layer for layer in counted.layers}
    # conv: kh*kw*cin*cout * output positions; dense: in*out.
    assert by_name["a"].macs == by_name["a"].macs_dense == 3 * 3 * 2 * 3 * 16 == 864
    assert by_name["b"].macs == 864 and by_name["fc"].macs == 3 * 5
    assert counted.macs == counted.macs_dense == 1743
    assert counted.flops == 2 * 1743
    assert counted.other == {"bn": 2 * 48, "activation": 48, "pool": 48, "add": 48,
                             "bias": 48 + 5, "normalize": 2 * 72}
    assert counted.total_flops == 2 * 1743 + 96 + 48 + 48 + 48 + 53 + 144
    assert counted.uncounted == []


def test_masked_layer_counts_its_density_and_a_plain_layer_its_nonzeros():
    net = _small_net()
    a, b = net.get_layer("a"), net.get_layer("b")
    mask = np.zeros(a.kernel.shape, np.float32)
    mask.reshape(-1)[::4] = 1                                          # 14 of 54 weights
    masks_lib.set_mask(a, mask)
    kernel = np.asarray(b.kernel.numpy())
    kernel.reshape(-1)[:27] = 0
    b.kernel.assign(kernel)
    by_name = {layer.name: layer for layer in birds_tf.flops.count(net).layers}
    assert by_name["a"].density == pytest.approx(14 / 54)
    assert by_name["a"].macs == pytest.approx(14 / 54 * by_name["a"].macs_dense)
    assert by_name["a"].macs_dense == 864
    assert by_name["b"].macs == 27 * 16


@pytest.fixture(scope="module")
def resnet18():
    return birds_tf.models.build("preact_resnet18", num_classes=10, input_shape=(32, 32, 3))


def test_dense_preact_resnet18_is_the_reference_555m_macs(resnet18):
    counted = birds_tf.flops.count(resnet18)
    assert counted.macs_dense == pytest.approx(555.42e6, rel=1e-3)
    assert counted.macs == counted.macs_dense
    assert counted.flops == pytest.approx(2 * 555.42e6, rel=1e-3)
    kinds = {layer.kind for layer in counted.layers if layer.weights}
    assert kinds == {"MaskedConv2D", "MaskedDense"} and counted.uncounted == []


def test_sparse_resnet18_counts_each_layer_at_its_density(resnet18):
    birds_tf.sparsity.init_sparse(resnet18, density=0.2, method="erk", seed=0)
    try:
        counted = birds_tf.flops.count(resnet18)
        for layer in counted.layers:
            if layer.weights:
                assert layer.macs == pytest.approx(layer.density * layer.macs_dense)
        assert counted.density == pytest.approx(masks_lib.global_density(resnet18), abs=1e-6)
        # ERK keeps the early, high-resolution layers denser: MACs fall less than weights.
        assert 0.2 * counted.macs_dense < counted.macs < counted.macs_dense
        dense_again = birds_tf.flops.macs_at(counted, {l.name: 1.0 for l in counted.layers})
        assert dense_again == counted.macs_dense
    finally:
        for layer in masks_lib.masked_layers(resnet18):
            layer.mask.assign(np.ones(layer.mask.shape, np.float32))


def test_paper_convention_33_x_inference_x_images_x_epochs(resnet18):
    f = birds_tf.flops.count(resnet18).flops
    assert birds_tf.flops.paper_training_flops(f, 45000, 200) == pytest.approx(
        33 * f * 45000 * 200)
    table = birds_tf.flops.paper_training_flops
    # The paper's Table 1 rows: dense, FB+, RB (clean stage 1, E1 = 50.01)
    # and OMP (PGD-10 dense pre-training for 200 epochs).
    assert table(260.07e9, 45000, 200) == pytest.approx(772.41e17, rel=2e-4)
    assert table(40.42e9, 45000, 200) == pytest.approx(120.04e17, rel=2e-4)
    assert table(64.64e9, 45000, 200, stage1_epochs=50.01,
                 dense_inference_flops=260.07e9) == pytest.approx(209.54e17, rel=2e-4)
    assert table(65.39e9, 45000, 200, stage1_epochs=200, dense_inference_flops=260.07e9,
                 stage1_pgd_steps=10) == pytest.approx(966.63e17, rel=2e-4)


def test_measured_training_flops_follow_the_density_trajectory():
    counted = birds_tf.flops.count(_small_net())
    m, w = counted.macs, sum(layer.weights for layer in counted.layers)
    history = [{"epoch": 1, "density": 0.5}, {"epoch": 2, "density": 0.25}]
    events = [{"step": 2, "nnz_before": w, "nnz_after": w / 2},
              {"step": 5, "nnz_before": w / 2, "nnz_after": w / 4}]
    # 10 images in batches of 4, 4, 2; PGD-1: (2K + 3) = 5 forward-equivalents per image.
    # Epoch 1: steps 1-2 at full density (the update comes after step 2), step 3 at 1/2.
    # Epoch 2: steps 4-5 at 1/2, step 6 at 1/4.
    mac_images = (4 + 4) * m + 2 * m / 2 + (4 + 4) * m / 2 + 2 * m / 4
    got = birds_tf.flops.training_flops(counted, history, num_train=10, batch_size=4,
                                        pgd_steps=1, events=events, gradient_growth=True)
    assert got["adversarial"] == pytest.approx(2 * 5 * mac_images)
    assert got["mask_updates"] == pytest.approx(2 * 2 * counted.macs_dense * (4 + 4))
    assert got["total"] == pytest.approx(got["adversarial"] + got["mask_updates"])
    dense = birds_tf.flops.training_flops(counted, [{"epoch": 1}, {"epoch": 2}], 10, 4,
                                          pgd_steps=10, stage1_epochs=3)
    assert dense["adversarial"] == pytest.approx(23 * counted.flops * 10 * 2)
    assert dense["stage1"] == pytest.approx(3 * counted.flops * 10 * 3)


def test_runs_that_keep_their_structure_count_as_before_and_shrunk_epochs_at_their_own():
    """Unstructured runs (no ``forward_flops`` columns) and runs whose recorded structure is the
    final one keep the per-layer-density figure bit for bit; an epoch recorded on another
    (wider) structure counts its own forward FLOPs, its mask updates its own dense ones."""
    counted = birds_tf.flops.count(_small_net())
    dense = {layer.name: layer.macs_dense for layer in counted.layers if layer.weights}
    rows = [{"epoch": 1, "density/a": 0.5, "density/fc": 0.8},
            {"epoch": 2, "density/a": 0.25, "density/fc": 0.6}]
    # Hand count: masked layers at their densities, the plain conv "b" at its nonzeros.
    hand = [dense["b"] + 0.5 * dense["a"] + 0.8 * dense["fc"],
            dense["b"] + 0.25 * dense["a"] + 0.6 * dense["fc"]]
    before = birds_tf.flops.training_flops(counted, rows, num_train=10, batch_size=4,
                                           pgd_steps=2)
    assert before["total"] == pytest.approx(2 * 7 * 10 * sum(hand), rel=1e-12)
    same = [dict(r, forward_flops=123.0, forward_flops_dense=counted.flops_dense) for r in rows]
    again = birds_tf.flops.training_flops(counted, same, num_train=10, batch_size=4, pgd_steps=2)
    assert again == before  # bit-identical: the recorded structure is the final one
    # Epoch 1 ran on a structure 3x the final's dense cost, with 1000 mask-effective FLOPs.
    wider = [dict(rows[0], forward_flops=1000.0, forward_flops_dense=3 * counted.flops_dense),
             dict(rows[1], forward_flops=7.0, forward_flops_dense=counted.flops_dense)]
    got = birds_tf.flops.training_flops(counted, wider, num_train=10, batch_size=4, pgd_steps=2)
    assert got["adversarial"] == pytest.approx(2 * 7 * 10 * (500.0 + hand[1]), rel=1e-12)
    # Gradient growth at each epoch's last step (2 images): a dense backward of that epoch's
    # structure, 2 x its dense forward per image.
    events = [{"step": 3, "nnz_before": 10, "nnz_after": 10},
              {"step": 6, "nnz_before": 10, "nnz_after": 10}]
    got = birds_tf.flops.training_flops(counted, wider, num_train=10, batch_size=4,
                                        pgd_steps=2, events=events, gradient_growth=True)
    assert got["mask_updates"] == pytest.approx(2 * 2 * (3 + 1) * counted.flops_dense)


def test_sparse_finetune_stage_is_counted_at_its_own_densities():
    """IWI's pruned-net fine-tuning: (2K + 3) x 2 x its MACs per image and epoch, and the paper
    convention's 3 (K + 1) x its inference FLOPs."""
    counted = birds_tf.flops.count(_small_net())
    by_name = {layer.name: layer for layer in counted.layers}
    densities = {"a": 0.5, "fc": 0.2}
    sparse_macs = (by_name["a"].macs_dense * 0.5 + by_name["b"].macs
                   + by_name["fc"].macs_dense * 0.2)
    got = birds_tf.flops.training_flops(counted, [{"epoch": 1}], 10, 4, pgd_steps=2,
                                        finetune_epochs=3, finetune_pgd_steps=2,
                                        finetune_densities=densities)
    assert got["finetune"] == pytest.approx(7 * 2 * sparse_macs * 10 * 3)
    assert got["total"] == pytest.approx(got["adversarial"] + got["finetune"])
    paper = birds_tf.flops.paper_training_flops(counted.flops, 10, 1, 2, finetune_epochs=3,
                                                finetune_inference_flops=2 * sparse_macs,
                                                finetune_pgd_steps=2)
    assert paper == pytest.approx(9 * counted.flops * 10 + 9 * 2 * sparse_macs * 10 * 3)


@pytest.mark.parametrize("density,paper", [(0.2, 80.60 / 260.07), (0.1, 47.51 / 260.07)])
def test_paper_inference_ratios_follow_a_per_column_convention(resnet18, density, paper):
    """Table 1's IGQ / Flying Bird inference FLOPs over the dense row: not the MAC ratio, but the
    ratio with each weight counted once per output column (docs/flops.md, "The paper's inference
    column")."""
    from birds_tf.sparsity import distributions
    densities = distributions.layer_densities(resnet18, density, "igq")
    counted = birds_tf.flops.count(resnet18)
    macs = birds_tf.flops.inference_ratio(counted, densities)
    assert macs == pytest.approx(birds_tf.flops.macs_at(counted, densities) / counted.macs_dense)
    assert macs == pytest.approx({0.2: 0.516, 0.1: 0.357}[density], abs=1e-3)
    assert birds_tf.flops.inference_ratio(counted, densities, "paper") == \
        pytest.approx(paper, abs=5e-4)
    uniform = {layer.name: density for layer in counted.layers if layer.weights}
    for convention in ("macs", "paper"):  # uniform masks: the density itself (Random Pruning)
        assert birds_tf.flops.inference_ratio(counted, uniform, convention) == \
            pytest.approx(density)


def test_paper_convention_overcounts_a_run_that_ends_denser():
    """FB+'s "grow more" can fire alone: a run that ends denser than it trained costs less than
    the paper's final-density figure (the docs must not say FB+ only gets sparser)."""
    counted = birds_tf.flops.count(_small_net())
    history = [{"epoch": 1, "density": 0.2}, {"epoch": 2, "density": 0.2},
               {"epoch": 3, "density": 0.3}]
    measured = birds_tf.flops.training_flops(counted, history, 10, 5, pgd_steps=0)["total"]
    final = 2 * birds_tf.flops.macs_at(counted, global_density=0.3)
    paper = birds_tf.flops.paper_training_flops(final, 10, 3, pgd_steps=0)
    assert measured < paper
    import os
    root = os.path.dirname(os.path.dirname(__file__))
    for path in ("README.md", os.path.join("docs", "flops.md")):
        with open(os.path.join(root, path)) as f:
            assert "only gets sparser" not in " ".join(f.read().split()), path
