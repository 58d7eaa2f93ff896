"""Our schedules and magnitude mask against tfmot 0.8.1 itself, run in a legacy-Keras subprocess.

tfmot cannot live in a Keras 3 process (importing it sets TF_USE_LEGACY_KERAS), so a child
process with TF_USE_LEGACY_KERAS=1 evaluates tfmot and prints JSON; this process compares.
"""
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from birds_tf.pruning import masks, schedules

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 140

SCHEDULES = [
    ("PolynomialDecay", dict(initial_sparsity=0.0, final_sparsity=0.8, begin_step=0,
                             end_step=100, power=3, frequency=10)),
    ("PolynomialDecay", dict(initial_sparsity=0.2, final_sparsity=0.9, begin_step=17,
                             end_step=83, power=2, frequency=7)),
    ("PolynomialDecay", dict(initial_sparsity=0.3, final_sparsity=0.1, begin_step=0,
                             end_step=50, power=1, frequency=1)),
    ("PolynomialDecay", dict(initial_sparsity=0.05, final_sparsity=0.95, begin_step=3,
                             end_step=120, power=0.5, frequency=4)),
    ("PolynomialDecay", dict(initial_sparsity=0.1, final_sparsity=0.7, begin_step=5,
                             end_step=5, power=3, frequency=1)),
    ("PolynomialDecay", dict(initial_sparsity=0.5, final_sparsity=0.5, begin_step=0,
                             end_step=1, power=3, frequency=100)),
    ("ConstantSparsity", dict(target_sparsity=0.6, begin_step=0)),
    ("ConstantSparsity", dict(target_sparsity=0.75, begin_step=10, end_step=50, frequency=3)),
    ("ConstantSparsity", dict(target_sparsity=0.0, begin_step=2, end_step=2, frequency=1)),
]

BAD_SCHEDULES = [
    ("PolynomialDecay", dict(initial_sparsity=0.0, final_sparsity=0.8, begin_step=0,
                             end_step=-1)),
    ("PolynomialDecay", dict(initial_sparsity=0.0, final_sparsity=1.0, begin_step=0,
                             end_step=10)),
    ("PolynomialDecay", dict(initial_sparsity=0.0, final_sparsity=0.5, begin_step=10,
                             end_step=5)),
    ("ConstantSparsity", dict(target_sparsity=0.5, begin_step=-1)),
    ("ConstantSparsity", dict(target_sparsity=0.5, begin_step=0, end_step=-2)),
    ("ConstantSparsity", dict(target_sparsity=0.5, begin_step=0, frequency=0)),
    ("ConstantSparsity", dict(target_sparsity=-0.1, begin_step=0)),
]

SPARSITIES = [0.0, 0.1, 0.25, 1 / 3, 0.5, 0.8, 0.95, 0.999]
# (weights index, PolynomialDecay step): masks under a schedule's own float32 sparsities.
SCHEDULED = [(0, s) for s in (0, 10, 30, 60, 100, 130)]

CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    from tensorflow_model_optimization.python.core.sparsity.keras import (pruning_impl,
                                                                          pruning_schedule)

    cfg = json.load(open(sys.argv[1]))
    weights = np.load(sys.argv[2])
    out = {"schedules": [], "bad": [], "masks": [], "scheduled": []}
    for cls, kw in cfg["schedules"]:
        sched = getattr(pruning_schedule, cls)(**kw)
        rows = []
        for step in range(cfg["steps"] + 1):
            should, sparsity = sched(tf.constant(step, tf.int64))
            rows.append([bool(should), repr(float(sparsity))])
        out["schedules"].append(rows)
    for cls, kw in cfg["bad"]:
        try:
            getattr(pruning_schedule, cls)(**kw)
            out["bad"].append(False)
        except ValueError:
            out["bad"].append(True)

    def run(w, schedule, step):
        weight = tf.Variable(w)
        mask = tf.Variable(tf.ones_like(weight))
        threshold = tf.Variable(tf.zeros([], weight.dtype))
        step_var = tf.Variable(step, dtype=tf.int64)
        pruning = pruning_impl.Pruning(lambda: step_var, [(weight, mask, threshold)], schedule,
                                       block_size=(1, 1), block_pooling_type="AVG")
        pruning.conditional_mask_update()
        return [mask.numpy().astype(int).ravel().tolist(), repr(float(threshold.numpy()))]

    for i in range(len(weights.files)):
        w = weights["w%d" % i]
        for s in cfg["sparsities"]:
            if s >= 1.0:
                continue
            out["masks"].append(run(w, pruning_schedule.ConstantSparsity(s, 0, -1, 1), 0))
    poly = pruning_schedule.PolynomialDecay(0.0, 0.9, 0, 100, power=3, frequency=1)
    for i, step in cfg["scheduled"]:
        out["scheduled"].append(run(weights["w%d" % i], poly, step))
    print("JSON" + json.dumps(out))
""")


def _weights():
    rng = np.random.default_rng(0)
    w = [rng.normal(size=(5, 7)).astype(np.float32),
         rng.normal(size=(3, 3, 4, 8)).astype(np.float32),
         np.round(rng.normal(size=(6, 10)), 1).astype(np.float32),   # many ties
         np.where(rng.random((4, 9)) < 0.5, 0.0,                       # half exact zeros
                  rng.normal(size=(4, 9))).astype(np.float32),
         np.full((3, 4), -0.5, np.float32),                            # all tied
         rng.integers(-2, 3, size=(7,)).astype(np.float32)]            # 1-D, few levels
    return w


@pytest.fixture(scope="module")
def tfmot_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tfmot")
    weights = _weights()
    np.savez(tmp / "w.npz", **{f"w{i}": w for i, w in enumerate(weights)})
    (tmp / "cfg.json").write_text(json.dumps(
        {"schedules": SCHEDULES, "bad": BAD_SCHEDULES, "steps": STEPS,
         "sparsities": SPARSITIES, "scheduled": SCHEDULED}))
    (tmp / "child.py").write_text(CHILD)
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, str(tmp / "child.py"), str(tmp / "cfg.json"),
                           str(tmp / "w.npz")], env=env, capture_output=True, text=True,
                          cwd=str(tmp), timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"tfmot subprocess failed:\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("JSON")][-1]
    return json.loads(line[4:]), weights


def _same_float(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_schedules_match_tfmot_at_every_step(tfmot_results):
    ref, _ = tfmot_results
    for (cls, kw), rows in zip(SCHEDULES, ref["schedules"]):
        ours = getattr(schedules, cls)(**kw)
        for step, (should, sparsity) in enumerate(rows):
            got_should, got_sparsity = ours(step)
            assert got_should == should, (cls, kw, step)
            assert isinstance(got_sparsity, np.float32)
            assert _same_float(float(got_sparsity), float(sparsity)), \
                (cls, kw, step, float(got_sparsity), sparsity)


def test_schedule_validation_matches_tfmot(tfmot_results):
    ref, _ = tfmot_results
    for (cls, kw), raised in zip(BAD_SCHEDULES, ref["bad"]):
        assert raised, (cls, kw)
        with pytest.raises(ValueError):
            getattr(schedules, cls)(**kw)


def test_magnitude_masks_match_tfmot_including_ties(tfmot_results):
    ref, weights = tfmot_results
    it = iter(ref["masks"])
    for w in weights:
        for s in SPARSITIES:
            if s >= 1.0:
                continue
            mask_ref, threshold_ref = next(it)
            threshold, mask = masks.magnitude_mask(w, np.float32(s))
            assert mask.shape == w.shape and mask.dtype == w.dtype
            assert mask.astype(int).ravel().tolist() == mask_ref, (w.shape, s)
            assert float(threshold) == float(threshold_ref)
    poly = schedules.PolynomialDecay(0.0, 0.9, 0, 100, power=3, frequency=1)
    updated = []
    for (i, step), (mask_ref, _) in zip(SCHEDULED, ref["scheduled"]):
        mask, did = masks.conditional_mask_update(
            weights[i], np.ones_like(weights[i]), poly, step)
        updated.append(did)
        assert mask.astype(int).ravel().tolist() == mask_ref, step
    assert updated == [True] * 5 + [False]  # step 130 is past end_step: the mask is kept


def test_tfmot_mask_keeps_all_ties():
    w = np.array([3.0, -1.0, 1.0, 1.0, 0.5, -2.0], np.float32)
    # k = round(6 * 0.5) = 3 -> threshold |w| = 1.0, and all three 1.0s are kept.
    np.testing.assert_array_equal(masks.magnitude_mask(w, 0.5)[1], [1, 1, 1, 1, 0, 1])
    assert masks.keep_count(10, 0.95) == 1  # round(0.5) = 0 -> at least one
    assert masks.keep_count(10, 0.75) == 2  # round(2.5) = 2 (half to even)


def test_birds_tf_never_imports_tfmot_and_keeps_keras3():
    code = textwrap.dedent("""
        import os, sys
        import birds_tf
        import birds_tf.sparsity
        import birds_tf.pruning.masks, birds_tf.pruning.schedules
        import tensorflow as tf, keras
        bad = sorted(m for m in sys.modules if m.startswith("tensorflow_model_optimization"))
        assert not bad, bad
        assert "tf_keras" not in sys.modules
        assert tf.keras.layers.Dense is keras.layers.Dense, tf.keras
        assert keras.__version__.startswith("3."), keras.__version__
        assert "TF_USE_LEGACY_KERAS" not in os.environ
        print("OK")
    """)
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("OK")
