"""Evaluation attacks draw different random starts in different batches, deterministically."""
import importlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from birds_tf.attacks import registry

autoattack_lib = importlib.import_module("birds_tf.attacks.autoattack")


def _net():
    keras.utils.set_random_seed(3)
    return keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)])


def _identical(n=8):
    x = np.full((n, 4, 4, 1), 0.5, np.float32)
    return x, np.zeros(n, np.int64)


def test_run_attack_batches_get_different_random_starts():
    """One PGD step from the random start: the adversarial image depends on the start, so two
    batches of the same images must differ; rerunning must repeat them exactly."""
    net, (x, y) = _net(), _identical()
    runs = [registry.run_attack("pgd20", net, x, y, eps=0.1, batch_size=4, return_adv=True,
                                steps=1)["x_adv"] for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])  # deterministic
    first, second = runs[0][:4], runs[0][4:]
    assert np.abs(first - second).max() > 1e-3
    # Batch 0 keeps the seed itself: the first batch equals a one-batch run on it.
    alone = registry.run_attack("pgd20", net, x[:4], y[:4], eps=0.1, batch_size=4,
                                return_adv=True, steps=1)["x_adv"]
    np.testing.assert_array_equal(first, alone)


def _recorder(seen):
    def attack(model, x, y, eps=8 / 255, seed=0, **unused):
        seen.append(int(seed))
        return tf.identity(x)
    return attack


def test_split_evaluation_salts_each_batch(monkeypatch):
    """``evaluation.batched.run_one`` splits the data itself: its batches get distinct seeds, the
    same on a rerun (resumable)."""
    from birds_tf.evaluation.batched import run_one
    seen = []
    monkeypatch.setitem(registry.ATTACKS, "recorder", (_recorder(seen), {}))
    net, (x, y) = _net(), _identical(10)
    run_one("recorder", net, x, y, eps=0.1, batch_size=4)
    first = list(seen)
    assert len(first) == 3 and len(set(first)) == 3 and first[0] == 0
    seen.clear()
    run_one("recorder", net, x, y, eps=0.1, batch_size=4)
    assert seen == first


def test_autoattack_chunks_get_different_seeds(monkeypatch):
    seen = []
    monkeypatch.setitem(autoattack_lib._FUNCS, "square", _recorder(seen))
    net, (x, y) = _net(), _identical(8)
    y = np.asarray(net.predict(x, verbose=0).argmax(-1))  # all clean-correct, all attacked
    autoattack_lib.autoattack(net, x, y, eps=0.1, attacks=("square",), batch_size=3, seed=5,
                              checks=False)
    assert len(seen) == 3 and len(set(seen)) == 3 and seen[0] == 5


@pytest.mark.parametrize("seed", [0, 7])
def test_batch_seed_is_distinct_and_keeps_batch_zero(seed):
    from birds_tf.attacks._common import batch_seed
    seeds = [batch_seed(seed, b) for b in range(50)]
    assert seeds[0] == seed and len(set(seeds)) == 50
    assert all(0 <= s < 2 ** 31 - 1 for s in seeds)
