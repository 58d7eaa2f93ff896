"""Property tests of the mask machinery over random layer shapes, densities and seeds."""
import functools
import math

import keras
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from birds_tf.layers import MaskedConv2D, MaskedDense
from birds_tf.sparsity import distributions as dist
from birds_tf.sparsity import magnitude
from birds_tf.sparsity import masks as masks_lib

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

dims = st.integers(1, 6)
conv_shapes = st.tuples(st.sampled_from([1, 3]), dims, dims).map(lambda s: (s[0], s[0]) + s[1:])
dense_shapes = st.tuples(st.integers(1, 40), st.integers(1, 12))
layer_shapes = st.lists(st.one_of(conv_shapes, dense_shapes), min_size=1, max_size=6) \
    .map(lambda ss: {f"layer{i}": s for i, s in enumerate(ss)})
densities = st.floats(0.001, 1.0, allow_nan=False)
seeds = st.integers(0, 2**31 - 1)


def _total(shapes):
    return sum(math.prod(s) for s in shapes.values())


@SETTINGS
@given(shapes=layer_shapes, density=densities, seed=seeds, method=st.sampled_from(
    ["igq", "erk", "uniform"]))
def test_random_masks_have_exact_zero_counts(shapes, density, seed, method):
    budget = getattr(dist, method)(shapes, density)
    out = dist.random_mask_arrays(shapes, budget, seed)
    for name, shape in shapes.items():
        mask = out[name]
        n = math.prod(shape)
        assert mask.shape == shape
        assert set(np.unique(mask)) <= {0.0, 1.0}
        assert int((mask == 0).sum()) == dist.pruned_count(budget[name], n)
        assert dist.pruned_count(budget[name], n) in (int((1 - budget[name]) * n),
                                                      int((1 - budget[name]) * n) + 1)


@SETTINGS
@given(shapes=layer_shapes, density=densities, seed=seeds)
def test_prune_and_keep_sets_partition_the_weights(shapes, density, seed):
    rng = np.random.default_rng(seed)
    weights = {n: rng.normal(size=s) for n, s in shapes.items()}
    for out in (magnitude.global_magnitude_mask_arrays(weights, density),
                dist.random_mask_arrays(shapes, dist.uniform(shapes, density), seed)):
        for name, mask in out.items():
            keep = set(np.flatnonzero(mask == 1))
            prune = set(np.flatnonzero(mask == 0))
            assert keep.isdisjoint(prune)
            assert keep | prune == set(range(math.prod(shapes[name])))


@SETTINGS
@given(shapes=layer_shapes, density=densities, seed=seeds,
       rule=st.sampled_from(["l1_unstructured", "early_bird"]), ties=st.booleans())
def test_global_magnitude_keeps_promised_count(shapes, density, seed, rule, ties):
    rng = np.random.default_rng(seed)
    weights = {n: rng.normal(size=s) for n, s in shapes.items()}
    if ties:  # coarse values: many exact ties and zeros
        weights = {n: np.round(w) for n, w in weights.items()}
    out = magnitude.global_magnitude_mask_arrays(weights, density, rule=rule)
    total = _total(shapes)
    kept = sum(int(m.sum()) for m in out.values())
    flat = np.concatenate([np.abs(weights[n]).ravel() for n in shapes])
    keep = np.concatenate([out[n].ravel() for n in shapes]) == 1
    if rule == "l1_unstructured":
        assert kept == total - int(round((1 - density) * total))
    else:
        thre = np.sort(flat)[min(int(total * (1 - density)), total - 1)]
        assert kept == int((flat > thre).sum())
    if keep.any() and (~keep).any():  # every kept magnitude >= every pruned one
        assert flat[keep].min() >= flat[~keep].max()


@functools.lru_cache(maxsize=1)
def _model():
    inp = keras.Input((6, 6, 2))
    x = MaskedConv2D(4, 3, use_bias=False, name="pc1")(inp)
    x = keras.layers.Flatten()(x)
    out = MaskedDense(3, name="pfc")(x)
    return keras.Model(inp, out)


@SETTINGS
@given(density=densities, seed=seeds)
def test_applying_a_mask_twice_equals_once(density, seed):
    model = _model()
    rng = np.random.default_rng(seed)
    for layer in masks_lib.masked_layers(model):
        layer.kernel.assign(rng.normal(size=tuple(layer.kernel.shape)).astype(np.float32))
    new = dist.random_masks(model, dist.uniform(dist.kernel_shapes(model), density), seed)
    masks_lib.set_masks(model, new, zero_kernel=False)
    masks_lib.apply_masks(model)
    once = [layer.kernel.numpy().copy() for layer in masks_lib.masked_layers(model)]
    masks_lib.apply_masks(model)
    twice = [layer.kernel.numpy() for layer in masks_lib.masked_layers(model)]
    for a, b, layer in zip(once, twice, masks_lib.masked_layers(model)):
        np.testing.assert_array_equal(a, b)
        assert not a[new[layer.name] == 0].any()
    # Masks from magnitude pruning are idempotent too: re-pruning the pruned net changes nothing.
    m1 = magnitude.global_magnitude_masks(model, density)
    masks_lib.set_masks(model, m1)
    m2 = magnitude.global_magnitude_masks(model, density)
    assert magnitude.hamming_distance(m1, m2) == 0.0


@SETTINGS
@given(shapes=layer_shapes, density=densities)
def test_igq_global_density_within_one_weight(shapes, density):
    d = dist.igq(shapes, density)
    total = _total(shapes)
    g = sum(d[n] * math.prod(s) for n, s in shapes.items()) / total
    assert abs(g - density) < 1.0 / total
    assert all(0 < v <= 1 for v in d.values())


@SETTINGS
@given(shapes=layer_shapes, density=densities)
def test_erk_density_at_most_one_and_global_exact(shapes, density):
    d = dist.erk(shapes, density)
    assert all(0 < v <= 1.0 for v in d.values())
    total = _total(shapes)
    g = sum(d[n] * math.prod(s) for n, s in shapes.items()) / total
    assert abs(g - density) < 1e-6


@SETTINGS
@given(a=st.lists(st.booleans(), min_size=1, max_size=50), seed=seeds)
def test_hamming_distance_counts_differences(a, seed):
    a = np.array(a, np.float32)
    flip = np.random.default_rng(seed).random(a.size) < 0.3
    b = np.where(flip, 1 - a, a)
    assert magnitude.hamming_distance(a, b) == flip.sum() / a.size
    assert magnitude.hamming_distance({"x": a}, {"x": b}) == flip.sum() / a.size
