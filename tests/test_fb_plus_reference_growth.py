"""The authors' growth rules next to the paper's: Bernoulli random growth with its absorbing dense
state, the exact count that never gets there, and gradient growth's top-k over all positions."""
import math
import os

import gin
import numpy as np
import pytest

import birds_tf
from birds_tf.sparsity import flying_bird as dynamic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def _gin_root(monkeypatch):
    monkeypatch.chdir(ROOT)
    gin.clear_config()
    yield
    gin.clear_config()


def _stem_like(rng, active=71, numel=72):
    """A 3x3x1x8 stem with ``active`` of its 72 weights on, distinct magnitudes."""
    weights = rng.uniform(0.1, 1.0, numel)
    mask = np.zeros(numel, np.float32)
    mask[rng.permutation(numel)[:active]] = 1.0
    return weights * mask, mask


def _update(weights, mask, growth, rng, k=0.5, **kwargs):
    new, _, _ = dynamic.update_layer_mask(weights * mask, mask, None, k, growth=growth, rng=rng,
                                          prune_ties="threshold", **kwargs)
    return new


def test_bernoulli_growth_refills_a_nearly_dense_layer_at_the_hand_rate():
    # 71 of 72 active, k = 0.5: ceil(35.5) = 36 pruned, so 37 empty positions, each regrown with
    # probability 36/37: all 37 with probability (36/37)**37 = 0.3629; 36 on average.
    rng = np.random.default_rng(0)
    weights, mask = _stem_like(rng)
    trials = 3000
    counts = np.array([_update(weights, mask, "random_bernoulli", rng).sum()
                       for _ in range(trials)])
    p_dense = (36 / 37) ** 37
    assert p_dense == pytest.approx(0.3629, abs=1e-4)
    assert abs((counts == 72).mean() - p_dense) < 4 * math.sqrt(p_dense * (1 - p_dense) / trials)
    assert abs(counts.mean() - 71) < 4 * math.sqrt(37 * (36 / 37) * (1 / 37) / trials)
    # Grow-more asks for min(1.05 * 36, 37) = 37 of 37: every position regrows, always dense.
    more = [_update(weights, mask, "random_bernoulli", rng, grow_more=True).sum()
            for _ in range(20)]
    assert more == [72] * 20


def test_bernoulli_growth_has_an_absorbing_dense_state():
    # The reference skips a fully dense layer in pruning and growth, so once the Bernoulli draw
    # refills the stem it stays 72/72 for good, FB+'s prune-more included.
    rng = np.random.default_rng(1)
    weights, mask = _stem_like(rng)
    history = []
    for step in range(60):
        new, pruned, grown = dynamic.update_layer_mask(
            weights * mask, mask, None, 0.5, growth="random_bernoulli", rng=rng,
            prune_ties="threshold", prune_more=step >= 30)  # FB+ prune-more from update 30
        history.append(int(new.sum()))
        if mask.sum() == 72:  # skipped: nothing pruned, nothing grown
            assert not pruned.any() and not grown.any()
        mask = new
        weights = rng.uniform(0.1, 1.0, 72)  # training moves the weights between updates
    first = history.index(72)  # it does refill, and before prune-more could pull it down
    assert first < 30, history
    assert history[first:] == [72] * (60 - first)


@pytest.mark.parametrize("prune_ties", ["threshold", "exact"])
def test_the_exact_count_never_refills_a_nearly_dense_layer(prune_ties):
    rng = np.random.default_rng(2)
    weights, mask = _stem_like(rng)
    moved = 0
    for step in range(300):
        new, pruned, _ = dynamic.update_layer_mask(
            weights * mask, mask, None, dynamic.cosine_k(step, 300), growth="random", rng=rng,
            prune_ties=prune_ties)
        assert new.sum() == 71  # exactly as many grow as were pruned, every time
        moved += int(pruned.sum() > 0)
        mask = new
        weights = rng.uniform(0.1, 1.0, 72)
    assert moved > 150  # and it keeps moving (a weight may be pruned and regrown in place)


def test_bernoulli_growth_is_a_function_of_the_generator_state():
    weights, mask = _stem_like(np.random.default_rng(3), active=40)
    a = [_update(weights, mask, "random_bernoulli", np.random.default_rng(7)) for _ in range(2)]
    np.testing.assert_array_equal(a[0], a[1])
    b = _update(weights, mask, "random_bernoulli", np.random.default_rng(8))
    assert not np.array_equal(a[0], b)


def test_gradient_topk_over_all_positions_wastes_budget_on_active_weights():
    weights = np.array([0.9, 0.05, 0.0, 0.4, 0.02, 0.0, 0.7, 0.0])
    mask = np.array([1, 1, 0, 1, 1, 0, 1, 0], np.float32)
    grad = np.array([3.0, 0.0, 0.0, 1.0, 0.0, 2.0, 0.5, 0.0])
    # nnz 5, k = 0.4: ceil(2.0) = 2 pruned, indices 4 (0.02) and 1 (0.05); active left 0, 3, 6.
    # Empty: 1, 2, 4, 5, 7, of which only 5 has a non-zero gradient. Budget 2.
    # Paper ('empty'): 5, then the zero-gradient tie broken by position, 1: nnz stays 5.
    new, _, grown = dynamic.update_layer_mask(weights, mask, grad, k=0.4)
    assert np.flatnonzero(new).tolist() == [0, 1, 3, 5, 6]
    assert np.flatnonzero(grown).tolist() == [5]  # 1 was pruned and regrown: keeps its value
    # Reference ('all'): scores |g| * (mask == 0) = [0, 0, 0, 0, 0, 2, 0, 0]; the top 2 are 5 and
    # position 0 (the first zero score), which is active: a no-op, so only 5 grows, nnz 4.
    new, pruned, grown = dynamic.update_layer_mask(weights, mask, grad, k=0.4,
                                                   gradient_topk="all")
    assert np.flatnonzero(new).tolist() == [0, 3, 5, 6]
    assert np.flatnonzero(pruned).tolist() == [1, 4] and np.flatnonzero(grown).tolist() == [5]
    # With enough non-zero gradients on empty positions the two rules agree.
    dense_grad = grad + 0.01 * np.arange(1, 9)
    for more in (False, True):
        a = dynamic.update_layer_mask(weights, mask, dense_grad, 0.4, grow_more=more)
        b = dynamic.update_layer_mask(weights, mask, dense_grad, 0.4, grow_more=more,
                                      gradient_topk="all")
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("kwargs,match", [
    ({"growth": "bernoulli"}, "Unknown growth mode 'bernoulli'.*'random_bernoulli' released"),
    ({"gradient_topk": "active"}, "Unknown gradient_topk 'active'.*'empty' paper, 'all'"),
])
def test_bad_growth_settings_name_the_value_and_the_choices(kwargs, match):
    with pytest.raises(ValueError, match=match):
        birds_tf.DynamicSparsity(**kwargs)
    with pytest.raises(ValueError, match=match.split(".*")[0]):
        dynamic.update_layer_mask(np.ones(4), np.ones(4), np.ones(4), 0.5, **kwargs)


def test_official_code_config_gives_the_references_growth_under_both_rules(_gin_root):
    from launch import common
    from birds_tf.experiment.flying_bird import DynamicSparsity  # with gin's bindings
    try:
        common.parse_gin(["gin/table1/fb_plus_resnet18.gin"], [])
        paper = DynamicSparsity(plus=True)
        assert (paper.growth, paper.gradient_topk) == ("gradient", "empty")
        gin.clear_config()
        common.parse_gin(["gin/table1/fb_plus_resnet18_official_code.gin"], [])
        code = DynamicSparsity(plus=True)
        assert (code.growth, code.gradient_topk) == ("random_bernoulli", "all")
        gin.clear_config()
        # What the side-by-side harness does for the paper's growth rule.
        common.parse_gin(["gin/table1/fb_plus_resnet18_official_code.gin"],
                         ["DynamicSparsity.growth='gradient'"])
        code = DynamicSparsity(plus=True)
        assert (code.growth, code.gradient_topk) == ("gradient", "all")
    finally:
        gin.clear_config()
