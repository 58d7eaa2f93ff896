"""Layer-wise density budgets (IGQ, ERK, ER, uniform, SNIP) and the random masks drawn from them."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from birds_tf import models
from birds_tf.sparsity import distributions as dist
from birds_tf.sparsity import masks as masks_lib


@pytest.fixture(scope="module")
def resnet():
    return models.build("preact_resnet18", num_classes=10, input_shape=(32, 32, 3), width=16)


@pytest.fixture(scope="module")
def shapes(resnet):
    return dist.kernel_shapes(resnet)


def _global(d, shapes):
    total = sum(math.prod(s) for s in shapes.values())
    return sum(d[n] * math.prod(shapes[n]) for n in shapes) / total, total


@pytest.mark.parametrize("density", [0.01, 0.05, 0.1, 0.2, 0.5, 0.9, 1.0])
def test_igq_global_density_within_one_weight(resnet, shapes, density):
    d = dist.layer_densities(resnet, density, "igq")
    assert set(d) == set(shapes)
    g, total = _global(d, shapes)
    assert abs(g - density) < 1.0 / total
    assert all(0 < v <= 1 for v in d.values())
    # IGQ: larger layers are pruned more (d = 1/(F n + 1) decreases with n).
    by_size = sorted(shapes, key=lambda n: math.prod(shapes[n]))
    assert d[by_size[0]] >= d[by_size[-1]]


def test_igq_matches_formula():
    shapes = {"a": (3, 3, 3, 16), "b": (3, 3, 16, 16), "c": (16, 10)}
    d = dist.igq(shapes, 0.3)
    counts = {n: math.prod(s) for n, s in shapes.items()}
    # All layers share one F: F = (1/d - 1) / n.
    forces = [(1.0 / d[n] - 1.0) / counts[n] for n in shapes]
    assert np.allclose(forces, forces[0], rtol=1e-9)
    assert dist.igq(list(shapes.values()), 0.3) == [d[n] for n in shapes]


@pytest.mark.parametrize("density", [0.01, 0.05, 0.2, 0.5, 0.99])
def test_erk_never_exceeds_one_and_hits_target(resnet, shapes, density):
    d = dist.layer_densities(resnet, density, "erk")
    assert max(d.values()) <= 1.0
    g, _ = _global(d, shapes)
    assert g == pytest.approx(density, abs=1e-9)
    # Not-dense layers are proportional to raw_l = sum(shape)/prod(shape).
    raw = {n: sum(s) / math.prod(s) for n, s in shapes.items()}
    ratios = {n: d[n] / raw[n] for n in shapes if d[n] < 1.0}
    assert np.allclose(list(ratios.values()), next(iter(ratios.values())), rtol=1e-9)


def test_erk_caps_dense_layers():
    # A tiny classifier next to big convs: its raw density is far above the others.
    shapes = {"conv": (3, 3, 64, 64), "fc": (4, 2)}
    d = dist.erk(shapes, 0.5)
    assert d["fc"] == 1.0
    assert d["conv"] == pytest.approx((0.5 * (36864 + 8) - 8) / 36864)


def test_er_capped_equals_erk_and_uncapped_is_reference(shapes):
    assert dist.er(shapes, 0.2) == dist.erk(shapes, 0.2)
    ref = dist.er(shapes, 0.05, cap=False)
    total = sum(math.prod(s) for s in shapes.values())
    eps = 0.05 * total / sum(sum(s) for s in shapes.values())
    for n, s in shapes.items():
        assert ref[n] == pytest.approx(min(1.0, eps * sum(s) / math.prod(s)))
    # Without the cap the capped layers lose budget: the global density falls short.
    g, _ = _global(ref, shapes)
    assert g < 0.05


def test_uniform(resnet):
    d = dist.layer_densities(resnet, 0.3, "uniform")
    assert set(d.values()) == {0.3}


def test_snip_densities_sum_to_target(resnet, shapes):
    rng = np.random.default_rng(0)
    x = rng.random((4, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, 4)
    d = dist.layer_densities(resnet, 0.2, "snip", data=(x, y))
    kept = sum(round(d[n] * math.prod(shapes[n])) for n in shapes)
    total = sum(math.prod(s) for s in shapes.values())
    assert kept == total - int(0.8 * total)
    assert len(set(d.values())) > 1  # not uniform: SNIP prefers some layers


def test_errors(resnet):
    with pytest.raises(ValueError, match="'bogus'.*igq"):
        dist.layer_densities(resnet, 0.2, "bogus")
    for bad in (0.0, -0.1, 1.5, float("nan"), "x"):
        with pytest.raises(ValueError, match="density"):
            dist.layer_densities(resnet, bad, "igq")
    with pytest.raises(ValueError, match="snip.*data"):
        dist.layer_densities(resnet, 0.2, "snip")
    with pytest.raises(ValueError, match="seed"):
        dist.random_masks(resnet, {"conv1": 0.5}, seed=-1)
    with pytest.raises(ValueError, match="unknown layers"):
        dist.random_masks(resnet, {"nope": 0.5}, seed=0)
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        dist.random_masks(resnet, {"conv1": 1.5}, seed=0)


def test_random_masks_exact_counts_and_seeded(resnet, shapes):
    d = dist.layer_densities(resnet, 0.1, "igq")
    a = dist.random_masks(resnet, d, seed=3)
    b = dist.random_masks(resnet, d, seed=3)
    c = dist.random_masks(resnet, d, seed=4)
    for n, s in shapes.items():
        n_l = math.prod(s)
        assert a[n].shape == s
        assert int((a[n] == 0).sum()) == int((1 - d[n]) * n_l)
        np.testing.assert_array_equal(a[n], b[n])
    assert any((a[n] != c[n]).any() for n in shapes)


def test_random_masks_stable_across_processes():
    code = ("import numpy as np; from birds_tf.sparsity.distributions import random_mask_arrays;"
            "m = random_mask_arrays({'conv_a': (3, 3, 4, 8)}, {'conv_a': 0.25}, 7);"
            "print(''.join(str(int(v)) for v in m['conv_a'].ravel()))")
    env = dict(os.environ, PYTHONHASHSEED="123")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    here = dist.random_mask_arrays({"conv_a": (3, 3, 4, 8)}, {"conv_a": 0.25}, 7)["conv_a"]
    assert out.stdout.strip() == "".join(str(int(v)) for v in here.ravel())


def test_init_sparse_applies_masks(resnet):
    m = dist.init_sparse(resnet, 0.2, "erk", seed=1)
    assert masks_lib.get_masks(resnet).keys() == m.keys()
    for layer in masks_lib.masked_layers(resnet):
        k = layer.kernel.numpy()
        assert not k[layer.mask.numpy() == 0].any()
    assert masks_lib.global_density(resnet) == pytest.approx(0.2, abs=len(m) * 1e-4)
    masks_lib.set_masks(resnet, {n: np.ones_like(v) for n, v in m.items()})
