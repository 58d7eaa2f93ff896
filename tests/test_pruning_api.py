"""birds_tf.pruning end to end: the README's tfmot tutorial port, fit, AdversarialModel,
MirroredStrategy, .keras, export, summaries, and every refused input.

Mask values themselves are checked against tfmot in tests/test_pruning_tfmot_parity.py; here the
checks are against the schedule's own arithmetic (round(n * (1 - s)) kept weights per layer).
"""
import glob
import json
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import birds_tf
from birds_tf import pruning
from launch import export as export_main
from tests.conftest import mirrored

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
L = keras.layers


def _snippet():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    match = re.search(r"<!-- snippet: coming-from-tfmot.*?-->\s*```python\n(.*?)```", text, re.S)
    assert match, "the README lost its coming-from-tfmot snippet"
    return match.group(1)


def _kept(size, sparsity):
    """Weights tfmot keeps at ``sparsity`` when no magnitudes tie: max(round(n(1-s)), 1)."""
    return max(int(np.round(np.float32(size) * (np.float32(1) - np.float32(sparsity)))), 1)


def _cnn(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(8, 3, activation="relu"),
                             L.Flatten(), L.Dense(10)])


def _digits(n=256):
    from birds_tf.data import digits
    (x, y), _, _ = digits.fixed_split()
    return x[:n], y[:n]


def test_readme_tfmot_tutorial_port_trains_to_the_scheduled_sparsity(capsys):
    code = _snippet()
    assert "tensorflow_model_optimization" not in code and "tfmot" not in code
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    printed = float(re.search(r"sparsity ([0-9.]+)", capsys.readouterr().out).group(1))
    model, plain = namespace["model_for_pruning"], namespace["model_for_export"]
    schedule = namespace["pruning_params"]["pruning_schedule"]
    end_step = int(namespace["end_step"])
    assert end_step == 16 and schedule(end_step) == (True, np.float32(0.8))
    summary = pruning.pruning_summary(model)
    assert set(summary) == {"conv2d", "dense"}
    zeros = total = 0
    for name, row in summary.items():
        assert row["pruning_step"] == end_step            # 8 batches x 2 epochs
        assert row["size"] - row["zeros"] == _kept(row["size"], 0.8), name
        zeros, total = zeros + row["zeros"], total + row["size"]
    assert printed == pytest.approx(zeros / total) and 0.79 < printed < 0.81
    # The stripped model is plain Keras with the zeros in its kernels and the same outputs.
    assert [type(layer).__name__ for layer in plain.layers] == [
        "Reshape", "Conv2D", "MaxPooling2D", "Flatten", "Dense"]
    for layer in plain.layers:
        if hasattr(layer, "kernel"):
            assert np.mean(layer.kernel.numpy() == 0) == pytest.approx(
                summary[layer.name]["zeros"] / summary[layer.name]["size"])
    x = namespace["train_images"][:16]
    np.testing.assert_allclose(plain(x), model(x), atol=1e-6)
    # It learns (10 classes, chance 0.1) while 80% of its weights go.
    assert model.history.history["val_accuracy"][-1] > 0.3


def _fit(model, x, y, epochs=1, callbacks=(), batch_size=64):
    model.compile(optimizer=keras.optimizers.SGD(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0,
                     callbacks=[pruning.UpdatePruningStep(), *callbacks])


def test_functional_model_with_nested_model_is_pruned_and_stripped():
    keras.utils.set_random_seed(1)
    inner = keras.Sequential([keras.Input((6, 6, 8)), L.Conv2D(8, 3, padding="same",
                                                                 use_bias=False),
                              L.BatchNormalization()], name="block")
    inp = keras.Input((8, 8, 1))
    h = L.Conv2D(8, 3, activation="relu", name="stem")(inp)
    h = L.Add()([h, inner(h)])
    h = L.GlobalAveragePooling2D()(h)
    out = L.Dense(10, name="head")(h)
    model = keras.Model(inp, out)
    x, y = _digits(128)
    before = np.asarray(model(x[:4]))
    pruned = pruning.prune_low_magnitude(model, pruning_schedule=pruning.ConstantSparsity(
        0.75, begin_step=1, frequency=100))
    assert {type(layer).__name__ for layer in pruning.pruned_layers(pruned)} == {
        "PrunedConv2D", "PrunedDense"}
    assert [layer.name for layer in pruning.pruned_layers(pruned)] == ["stem", "conv2d", "head"] \
        or len(pruning.pruned_layers(pruned)) == 3
    np.testing.assert_allclose(pruned(x[:4]), before, atol=1e-6)  # weights kept, masks all ones
    _fit(pruned, x, y)
    for layer in pruning.pruned_layers(pruned):
        mask = layer.mask.numpy()
        assert mask.sum() == _kept(mask.size, 0.75), layer.name
        assert not layer.kernel.numpy()[mask == 0].any()   # re-zeroed at epoch end
    plain = pruning.strip_pruning(pruned)
    assert not pruning.pruned_layers(plain)
    kinds = {type(layer).__name__ for layer in plain.layers}
    assert "PrunedConv2D" not in kinds and "PrunedDense" not in kinds
    assert type(plain.get_layer("block").layers[0]) is L.Conv2D
    np.testing.assert_allclose(plain(x[:8]), pruned(x[:8]), atol=1e-5)


def test_single_layers_and_lists_prune_like_tfmot():
    dense = L.Dense(4, name="fc")
    dense.build((None, 8))
    schedule = pruning.ConstantSparsity(0.5, 0, frequency=1)
    pruned = pruning.prune_low_magnitude(dense, pruning_schedule=schedule)
    assert isinstance(pruned, pruning.PrunedDense) and isinstance(pruned, L.Dense)
    np.testing.assert_array_equal(pruned.kernel.numpy(), dense.kernel.numpy())
    layers = pruning.prune_low_magnitude([L.Conv2D(4, 3), L.Dense(10)],
                                         pruning_schedule=schedule)
    assert [type(layer) for layer in layers] == [pruning.PrunedConv2D, pruning.PrunedDense]
    model = keras.Sequential([keras.Input((8, 8, 1)), layers[0], L.Flatten(), layers[1]])
    # birds_tf's masked layers are pruned too, starting from kernel * mask with a fresh mask.
    masked = birds_tf.sparsify(_cnn())
    birds_tf.sparsity.init_sparse(masked, density=0.5, method="uniform", seed=0)
    from_masked = pruning.prune_low_magnitude(masked)
    for old, new in zip(masked.layers, from_masked.layers):
        if hasattr(old, "mask"):
            assert isinstance(new, pruning.PRUNED_LAYER_TYPES) and new.mask.numpy().all()
            np.testing.assert_array_equal(new.kernel.numpy(),
                                          np.asarray(old.effective_kernel()))
    x, y = _digits(64)
    _fit(model, x, y)
    masks = [layer.mask.numpy() for layer in layers]
    assert [m.sum() for m in masks] == [_kept(m.size, 0.5) for m in masks]


def test_keras_save_load_keeps_masks_steps_and_schedule(tmp_path):
    x, y = _digits(128)
    schedule = pruning.PolynomialDecay(0.2, 0.6, begin_step=0, end_step=np.int32(4), frequency=2)
    model = pruning.prune_low_magnitude(_cnn(), pruning_schedule=schedule)
    _fit(model, x, y)                                      # 2 batches: steps 1, 2
    path = str(tmp_path / "pruned.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    for a, b in zip(pruning.pruned_layers(model), pruning.pruned_layers(loaded)):
        assert type(a) is type(b)
        for name in ("kernel", "bias", "mask", "threshold", "pruning_step"):
            np.testing.assert_array_equal(getattr(a, name).numpy(),
                                          getattr(b, name).numpy(), err_msg=name)
        assert b.pruning_schedule.get_config() == pruning.schedules.serialize(schedule)
        assert int(b.pruning_step.numpy()) == 2
    _fit(loaded, x, y)                                     # resumes: steps 3, 4 -> end_step
    for layer in pruning.pruned_layers(loaded):
        assert int(layer.pruning_step.numpy()) == 4
        mask = layer.mask.numpy()
        assert mask.sum() == _kept(mask.size, 0.6), layer.name
    plain_path = str(tmp_path / "plain.keras")
    pruning.strip_pruning(loaded).save(plain_path)
    plain = keras.models.load_model(plain_path)
    assert {type(layer) for layer in plain.layers} == {L.Conv2D, L.Flatten, L.Dense}
    np.testing.assert_allclose(plain(x[:8]), loaded(x[:8]), atol=1e-5)


def test_adversarial_training_with_pruning_in_two_lines():
    x, y = _digits(128)
    net = pruning.prune_low_magnitude(_cnn(), pruning_schedule=pruning.ConstantSparsity(
        0.7, begin_step=2, frequency=1))
    model = birds_tf.AdversarialModel(net, birds_tf.AttackConfig(eps=0.1, step_size=0.05,
                                                                 steps=2), seed=0)
    model.compile(optimizer=birds_tf.TorchSGD(0.05, momentum=0.9))
    callback = pruning.UpdatePruningStep()
    model.fit(x, y, batch_size=64, epochs=2, verbose=0, callbacks=[callback])
    # 4 batches: steps 1..4 (counted once per batch, not once per PGD forward pass).
    assert [s for s, name in callback.updates if name == "dense"] == [2, 3, 4]
    for layer in pruning.pruned_layers(net):
        assert int(layer.pruning_step.numpy()) == 4
        mask = layer.mask.numpy()
        assert mask.sum() == _kept(mask.size, 0.7)
        assert not layer.kernel.numpy()[mask == 0].any()
    assert birds_tf.sparsity.global_density(net) == pytest.approx(
        1 - pruning.get_model_sparsity(model))


def test_mirrored_strategy_keeps_replicas_identical(two_cpus):
    x, y = _digits(128)
    strategy = mirrored(two_cpus)
    with strategy.scope():
        model = pruning.prune_low_magnitude(_cnn(), pruning_schedule=pruning.PolynomialDecay(
            0.3, 0.8, begin_step=0, end_step=4, frequency=2))
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[pruning.UpdatePruningStep()])
    for layer in pruning.pruned_layers(model):
        masks = [np.asarray(v) for v in layer.mask.value.values]
        kernels = [np.asarray(v) for v in layer.kernel.value.values]
        assert len(masks) == 2
        np.testing.assert_array_equal(masks[0], masks[1])
        np.testing.assert_array_equal(kernels[0], kernels[1])
        assert masks[0].sum() == _kept(masks[0].size, 0.8)
        assert not kernels[0][masks[0] == 0].any()
        assert int(layer.pruning_step.numpy()) == 4


def test_stripped_model_exports_and_reloads_and_launch_export_takes_a_pruned_net(tmp_path,
                                                                                 capsys):
    x, y = _digits(128)
    model = pruning.prune_low_magnitude(_cnn(), pruning_schedule=pruning.ConstantSparsity(
        0.6, 0, frequency=1))
    _fit(model, x, y)
    plain = pruning.strip_pruning(model)
    plain.export(str(tmp_path / "saved"), format="tf_saved_model", verbose=False)
    reloaded = tf.saved_model.load(str(tmp_path / "saved"))
    np.testing.assert_allclose(reloaded.serve(tf.constant(x[:8])), model(x[:8]), atol=1e-5)
    # launch.export on a workdir whose checkpoint is the (unstripped) pruned net.
    workdir = tmp_path / "run"
    os.makedirs(workdir / "checkpoints")
    model.save(str(workdir / "checkpoints" / "final.keras"))
    (workdir / "results.json").write_text(json.dumps({"method": "tfmot_pruning"}))
    export_main.main([f"--workdir={workdir}", f"--out={tmp_path / 'exported'}"])
    assert "sparse compressed" in capsys.readouterr().out
    served = tf.saved_model.load(str(tmp_path / "exported"))
    np.testing.assert_allclose(served.serve(tf.constant(x[:8])), model(x[:8]), atol=1e-5)
    meta = json.loads((tmp_path / "exported" / "metadata.json").read_text())
    assert meta["density"] == pytest.approx(1 - pruning.get_model_sparsity(model))


def test_pruning_summaries_write_per_layer_scalars(tmp_path):
    x, y = _digits(128)
    model = pruning.prune_low_magnitude(_cnn(), pruning_schedule=pruning.ConstantSparsity(
        0.5, 0, frequency=1))
    _fit(model, x, y, callbacks=[pruning.PruningSummaries(log_dir=str(tmp_path))])
    values = {}
    for path in glob.glob(str(tmp_path / "metrics" / "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for v in event.summary.value:
                values.setdefault(v.tag, []).append((event.step, float(tf.make_ndarray(v.tensor))))
    summary = pruning.pruning_summary(model)
    for name, row in summary.items():
        assert values[f"{name}/sparsity"] == [(0, 0.0), (2, pytest.approx(row["sparsity"]))]
        assert values[f"{name}/threshold"][-1] == (2, pytest.approx(row["threshold"]))
        assert values[f"{name}/target_sparsity"][-1] == (2, 0.5)
    assert glob.glob(str(tmp_path / "train" / "events.*"))  # the TensorBoard part still logs


class _Custom(L.Layer):
    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.w


class _OnlyDense(pruning.PruningPolicy):
    def allow_pruning(self, layer):
        return isinstance(layer, L.Dense)


def test_bad_schedules_are_refused_with_tfmot_checks():
    cases = [
        (lambda: pruning.ConstantSparsity(1.0, 0), r"target_sparsity must be in range \[0,1\)"),
        (lambda: pruning.ConstantSparsity(-0.1, 0), r"target_sparsity must be in range \[0,1\)"),
        (lambda: pruning.PolynomialDecay(0.0, 1.0, 0, 10), r"final_sparsity must be in range"),
        (lambda: pruning.PolynomialDecay(0.0, 0.5, 10, 5),
         r"begin_step \(10\) should be <= end_step"),
        (lambda: pruning.ConstantSparsity(0.5, 10, end_step=5), r"should be <= end_step \(5\)"),
        (lambda: pruning.ConstantSparsity(0.5, 0, frequency=0), r"frequency should be > 0, got 0"),
        (lambda: pruning.PolynomialDecay(0.0, 0.5, 0, 10, frequency=-1),
         r"frequency should be > 0"),
    ]
    for make, match in cases:
        with pytest.raises(ValueError, match=match):
            make()


def test_bad_pruning_input_is_refused_with_the_fix():
    six_inputs = keras.Sequential([keras.Input((6,)), L.Dense(4)])
    with pytest.raises(ValueError, match=r"input size \(6\) is not a multiple of n=4"):
        pruning.prune_low_magnitude(six_inputs, sparsity_m_by_n=(2, 4))
    with pytest.raises(ValueError, match=r"needs 0 < m < n"):
        pruning.prune_low_magnitude(_cnn(), sparsity_m_by_n=(4, 2))
    with pytest.raises(ValueError, match=r"must be a tuple/list of 2 integers"):
        pruning.prune_low_magnitude(_cnn(), sparsity_m_by_n=(2,))
    with pytest.raises(ValueError, match=r"2-dimensional weights; layer 'conv2d.*' is a Conv2D"):
        pruning.prune_low_magnitude(_cnn(), block_size=(2, 2))
    with pytest.raises(ValueError, match=r"Unsupported pooling type 'MIN'"):
        pruning.prune_low_magnitude(_cnn(), block_size=(2, 2), block_pooling_type="MIN")
    with pytest.raises(ValueError, match=r"pruning_schedule must be"):
        pruning.prune_low_magnitude(_cnn(), pruning_schedule=0.5)
    conv1d = keras.Sequential([keras.Input((8, 2)), L.Conv1D(4, 3, name="c1"), L.Flatten(),
                               L.Dense(2)])
    with pytest.raises(ValueError, match=r"Layer 'c1' \(Conv1D\) cannot be pruned: tfmot prunes"):
        pruning.prune_low_magnitude(conv1d)
    custom = keras.Sequential([keras.Input((4,)), _Custom(name="mine"), L.Dense(2)])
    with pytest.raises(ValueError, match=r"Layer 'mine' \(_Custom\) cannot be pruned.*policy"):
        pruning.prune_low_magnitude(custom)
    kept = pruning.prune_low_magnitude(conv1d, pruning_policy=_OnlyDense())
    assert [type(layer).__name__ for layer in kept.layers] == ["Conv1D", "Flatten", "PrunedDense"]
    pruned = pruning.prune_low_magnitude(_cnn())
    with pytest.raises(ValueError, match=r"already pruned \(layers \['conv2d.*', 'dense.*'\].*"
                                         r"strip_pruning"):
        pruning.prune_low_magnitude(pruned)
    with pytest.raises(ValueError, match=r"already pruned"):
        pruning.prune_low_magnitude(pruned.layers[0])
    with pytest.raises(ValueError, match=r"Subclassed models are not supported"):
        pruning.prune_low_magnitude(birds_tf.AdversarialModel(_cnn()))
    with pytest.raises(ValueError, match=r"can only prune"):
        pruning.prune_low_magnitude("model")
    with pytest.raises(ValueError, match=r"`log_dir` must be a non-empty string"):
        pruning.PruningSummaries(log_dir="")
    with pytest.raises(ValueError, match=r"expects a keras.Model"):
        pruning.strip_pruning(L.Dense(2))


def test_training_without_or_with_a_misused_callback_is_refused():
    x, y = _digits(64)
    model = pruning.prune_low_magnitude(_cnn())
    model.compile(optimizer="sgd",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match=r"before UpdatePruningStep ran"):
        model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    model.compile(optimizer="sgd", jit_compile=True,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match=r"before UpdatePruningStep ran"):  # XLA too
        model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"before UpdatePruningStep ran"):
        model(x[:2], training=True)
    model.compile(optimizer="sgd", steps_per_execution=2,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match=r"needs steps_per_execution=1 \(got 2\)"):
        model.fit(x, y, batch_size=32, epochs=1, verbose=0,
                  callbacks=[pruning.UpdatePruningStep()])
    dense = _cnn()
    dense.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match=r"found no pruned layers"):
        dense.fit(x, np.zeros((64, 10)), epochs=1, verbose=0,
                  callbacks=[pruning.UpdatePruningStep()])
    with pytest.raises(ValueError, match=r"no pruned layers"):
        pruning.get_model_sparsity(dense)
