"""birds_tf.pruning against tfmot 0.8.1's prune_low_magnitude, run in a legacy-Keras subprocess.

Both sides start from the same weights and take the same training steps (a linear loss of the
outputs, plain SGD applied by hand, so the gradients come from the same TF kernels): at every
step the masks and thresholds must be identical, for constant, polynomial, block (AVG and MAX,
aligned and not) and 2:4 pruning; the stripped models must give the same logits. One child
process computes every tfmot case (each TF start costs seconds).
"""
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from birds_tf import pruning

LR = 0.1
CASES = {
    # name: (model, schedule class, schedule kwargs, extra prune kwargs, steps, tied weights)
    "constant": ("cnn", "ConstantSparsity", dict(target_sparsity=0.5, begin_step=1, frequency=3),
                 {}, 8, True),
    "polynomial": ("cnn", "PolynomialDecay", dict(initial_sparsity=0.1, final_sparsity=0.8,
                                                  begin_step=1, end_step=7, power=3,
                                                  frequency=2), {}, 9, False),
    "block_avg": ("mlp", "PolynomialDecay", dict(initial_sparsity=0.2, final_sparsity=0.7,
                                                 begin_step=0, end_step=6, frequency=1),
                  dict(block_size=(2, 3)), 7, False),
    "block_max_offset": ("mlp", "ConstantSparsity", dict(target_sparsity=0.6, begin_step=1,
                                                         frequency=2),
                         dict(block_size=(3, 4), block_pooling_type="MAX"), 5, False),
    "block_avg_offset": ("mlp", "ConstantSparsity", dict(target_sparsity=0.5, begin_step=0,
                                                         frequency=1),
                         dict(block_size=(3, 4)), 4, False),
    "m_by_n_2_4": ("cnn", "ConstantSparsity", dict(target_sparsity=0.5, begin_step=0),
                   dict(sparsity_m_by_n=(2, 4)), 4, True),
}
INPUTS = {"cnn": (6, 6, 4), "mlp": (10,)}

CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.keras.compat import keras
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

    sk = tfmot.sparsity.keras
    cases = json.load(open(sys.argv[1]))
    data = np.load(sys.argv[2])
    out = {}

    def build(kind):
        L = keras.layers
        if kind == "cnn":
            layers = [L.InputLayer((6, 6, 4)), L.Conv2D(8, 3, activation="relu", name="conv"),
                      L.Flatten(), L.Dense(12, activation="relu", name="fc1"),
                      L.Dense(4, name="fc2")]
        else:
            layers = [L.InputLayer((10,)), L.Dense(12, activation="relu", name="fc1"),
                      L.Dense(6, name="fc2")]
        return keras.Sequential(layers)

    for name, (kind, cls, kw, extra, steps, _) in cases.items():
        model = build(kind)
        model.set_weights([data[f"{name}/w{i}"] for i in range(len(model.get_weights()))])
        pruned = sk.prune_low_magnitude(
            model, pruning_schedule=getattr(sk, cls)(**kw), **extra)
        callback = sk.UpdatePruningStep()
        callback.set_model(pruned)
        callback.on_train_begin()
        wrappers = [l for l in pruned.layers if isinstance(l, pruning_wrapper.PruneLowMagnitude)
                    and l.pruning_vars]
        for t in range(steps):
            for w in wrappers:
                out[f"{name}/{t}/{w.layer.name}/raw"] = w.layer.kernel.numpy()
            with tf.GradientTape() as tape:
                y = pruned(data[f"{name}/x{t}"], training=True)
                loss = tf.reduce_sum(y * data[f"{name}/c{t}"])
            for w in wrappers:
                _, mask, threshold = w.pruning_vars[0]
                out[f"{name}/{t}/{w.layer.name}/mask"] = mask.numpy()
                out[f"{name}/{t}/{w.layer.name}/threshold"] = threshold.numpy()
            variables = pruned.trainable_variables
            for v, g in zip(variables, tape.gradient(loss, variables)):
                v.assign_sub(0.1 * g)
        callback.on_epoch_end(0)
        stripped = sk.strip_pruning(pruned)
        out[f"{name}/logits"] = stripped(data[f"{name}/x_eval"]).numpy()
        out[f"{name}/kernels"] = np.concatenate(
            [l.kernel.numpy().ravel() for l in stripped.layers if hasattr(l, "kernel")])
    np.savez(sys.argv[3], **out)
    print("DONE")
""")


def _build(kind):
    L = keras.layers
    if kind == "cnn":
        layers = [keras.Input((6, 6, 4)), L.Conv2D(8, 3, activation="relu", name="conv"),
                  L.Flatten(), L.Dense(12, activation="relu", name="fc1"), L.Dense(4, name="fc2")]
    else:
        layers = [keras.Input((10,)), L.Dense(12, activation="relu", name="fc1"),
                  L.Dense(6, name="fc2")]
    return keras.Sequential(layers)


def _data():
    rng = np.random.default_rng(18)
    data = {}
    for name, (kind, _, _, _, steps, tied) in CASES.items():
        model = _build(kind)
        for i, w in enumerate(model.get_weights()):
            scale = 0.5 if w.ndim > 1 else 0.1
            value = rng.normal(size=w.shape) * scale
            if tied:
                value = np.round(value * 4) / 4  # many equal magnitudes, exact zeros
            data[f"{name}/w{i}"] = value.astype(np.float32)
        for t in range(steps):
            data[f"{name}/x{t}"] = rng.normal(size=(3, *INPUTS[kind])).astype(np.float32)
            data[f"{name}/c{t}"] = (0.05 * rng.normal(size=(3, model.output_shape[-1]))).astype(
                np.float32)
        data[f"{name}/x_eval"] = rng.normal(size=(5, *INPUTS[kind])).astype(np.float32)
    return data


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tfmot_pruning")
    data = _data()
    np.savez(tmp / "data.npz", **data)
    (tmp / "cases.json").write_text(json.dumps(CASES))
    (tmp / "child.py").write_text(CHILD)
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, str(tmp / "child.py"), str(tmp / "cases.json"),
                             str(tmp / "data.npz"), str(tmp / "out.npz")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(tmp))
    try:
        ours = {name: _ours(name, data) for name in CASES}  # while tfmot starts up
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "DONE" in stdout, stderr[-3000:]
    with np.load(tmp / "out.npz") as ref:
        ref = dict(ref)
    return data, ref, ours


def _ours(name, data):
    kind, cls, kw, extra, steps, _ = CASES[name]
    model = _build(kind)
    model.set_weights([data[f"{name}/w{i}"] for i in range(len(model.get_weights()))])
    pruned = pruning.prune_low_magnitude(
        model, pruning_schedule=getattr(pruning, cls)(**kw), **extra)
    callback = pruning.UpdatePruningStep()
    callback.set_model(pruned)
    callback.on_train_begin()
    out = {}
    for t in range(steps):
        for layer in pruning.pruned_layers(pruned):
            out[f"{name}/{t}/{layer.name}/raw"] = layer.kernel.numpy()
        callback.on_train_batch_begin(t)
        for layer in pruning.pruned_layers(pruned):
            out[f"{name}/{t}/{layer.name}/mask"] = layer.mask.numpy()
            out[f"{name}/{t}/{layer.name}/threshold"] = layer.threshold.numpy()
        with tf.GradientTape() as tape:
            y = pruned(data[f"{name}/x{t}"], training=True)
            loss = tf.reduce_sum(y * data[f"{name}/c{t}"])
        variables = pruned.trainable_variables
        for v, g in zip(variables, tape.gradient(loss, variables)):
            v.assign_sub(LR * g)
        callback.on_train_batch_end(t)
    callback.on_epoch_end(0)
    stripped = pruning.strip_pruning(pruned)
    out[f"{name}/logits"] = np.asarray(stripped(data[f"{name}/x_eval"]))
    out[f"{name}/kernels"] = np.concatenate(
        [np.asarray(layer.kernel).ravel() for layer in stripped.layers
         if hasattr(layer, "kernel")])
    out["updates"] = callback.updates
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_masks_and_thresholds_match_tfmot_at_every_step(runs, name):
    """Masks, thresholds and the raw kernels the masks are computed from, bit for bit."""
    _, ref, ours = runs
    keys = [k for k in ref if k.startswith(f"{name}/") and k.count("/") == 3]
    assert len(keys) == 3 * CASES[name][4] * (3 if CASES[name][0] == "cnn" else 2)
    changed = 0
    for key in sorted(keys):
        got, want = ours[name][key], ref[key]
        assert got.shape == want.shape, key
        np.testing.assert_array_equal(got, want, err_msg=key)
        if key.endswith("mask"):
            changed += int(not want.all())
    assert changed > 0  # some step actually pruned


@pytest.mark.parametrize("name", list(CASES))
def test_stripped_models_give_tfmot_logits(runs, name):
    _, ref, ours = runs
    np.testing.assert_array_equal(ours[name][f"{name}/kernels"] == 0,
                                  ref[f"{name}/kernels"] == 0)
    np.testing.assert_allclose(ours[name][f"{name}/logits"], ref[f"{name}/logits"],
                               rtol=1e-6, atol=1e-6)


def test_cases_exercise_what_they_claim(runs):
    data, ref, ours = runs
    # 2:4: exactly two of every four input channels kept, once, at step 1.
    kernel = ref["m_by_n_2_4/3/conv/mask"]                       # (3, 3, 4, 8)
    assert (kernel.sum(axis=2) == 2).all()
    assert {s for s, _ in ours["m_by_n_2_4"]["updates"]} == {1}
    # Block masks are constant on (2, 3) blocks.
    mask = ref["block_avg/6/fc1/mask"]                           # (10, 12)
    blocks = mask.reshape(5, 2, 4, 3)
    assert (blocks == blocks[:, :1, :, :1]).all()
    # A pruned weight came back: the straight-through gradient moved it past the threshold.
    revived = 0
    for name, (_, _, _, extra, steps, _) in CASES.items():
        if extra:
            continue
        for t in range(1, steps):
            for layer in ("conv", "fc1", "fc2"):
                before, after = ref[f"{name}/{t - 1}/{layer}/mask"], ref[f"{name}/{t}/{layer}/mask"]
                revived += int(((before == 0) & (after == 1)).sum())
    assert revived > 0
