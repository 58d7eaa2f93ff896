"""Static baselines (random / IGQ / ERK / SNIP / GraSP / SynFlow / OMP / Small Dense) and GMP."""
import json

import keras
import numpy as np
import pytest

import birds_tf
from birds_tf.pruning import gradual, schedules
from birds_tf.pruning import masks as pruning_masks
from birds_tf.sparsity import magnitude
from birds_tf.sparsity import masks as masks_lib
from birds_tf.utils import records
from birds_tf.utils.resume_state import ResumeState
from birds_tf.experiment import method as methods
from birds_tf.experiment import static_pruning
from birds_tf.training.adversarial import AdversarialModel, AttackConfig
from birds_tf.experiment.train_eval import Config
from birds_tf.training.optimizer import TorchSGD, momentum_buffer
from sparse_method_helpers import FAST, experiment, run, tiny_arch  # noqa: F401


# ------------------------------------------------------------------------------------------------
# magnitude pruning counts

def test_global_and_layerwise_magnitude_pruning_keep_exact_counts():
    rng = np.random.default_rng(0)
    weights = {"a": rng.normal(size=(3, 3, 2, 4)), "b": rng.normal(size=(10, 3)) * 0.01,
               "c": rng.normal(size=(7,)) * 100}
    total = sum(w.size for w in weights.values())
    for density in (0.2, 0.1, 0.5, 0.05):
        g = magnitude.global_magnitude_mask_arrays(weights, density)
        assert sum(int(m.sum()) for m in g.values()) == total - round((1 - density) * total)
        # one threshold: every kept |w| is >= every pruned |w|
        kept = np.concatenate([np.abs(weights[n])[g[n] == 1] for n in weights])
        pruned = np.concatenate([np.abs(weights[n])[g[n] == 0] for n in weights])
        assert kept.min() >= pruned.max()
        for name, w in weights.items():
            layer = magnitude.global_magnitude_mask_arrays({name: w}, density)[name]
            assert int(layer.sum()) == w.size - round((1 - density) * w.size)
    # the global ticket favours the large-magnitude layer; the small one is pruned first
    g = magnitude.global_magnitude_mask_arrays(weights, 0.2)
    assert g["c"].mean() > g["a"].mean() > g["b"].mean()
    # the early-bird rule prunes ties at the threshold: int(N * s)-th smallest and below
    eb = magnitude.global_magnitude_mask_arrays({"x": np.array([1.0, 1, 1, 2, 3])}, 0.6,
                                                rule="early_bird")
    np.testing.assert_array_equal(eb["x"], [0, 0, 0, 1, 1])


# ------------------------------------------------------------------------------------------------
# refusals

BAD_SETTINGS = [
    (["table1/snip_resnet18.gin"], ["train_eval.method = 'prune_at_init'",
                                    "PruneAtInit.scorer = 'fisher'"], "Unknown scorer 'fisher'"),
    (["table1/synflow_resnet18.gin"], ["SynFlow.rounds = 0"],
     "SynFlow rounds must be an integer >= 1, got 0"),
    (["table1/synflow_resnet18.gin"], ["train_eval.method = 'prune_at_init'",
                                       "PruneAtInit.scorer = 'synflow'", "PruneAtInit.rounds = -1"],
     "synflow rounds must be an integer >= 1, got -1"),
    (["table1/omp_resnet18.gin"], ["OMP.pretrain = 'adam'"],
     "Unknown pretrain training mode 'adam'"),
    (["table1/omp_resnet18.gin"], ["OMP.pretrain_milestones = (3,)"],
     "pretrain milestone 3 is outside 1..pretrain_epochs"),
    (["beyond_paper/gmp_resnet18.gin"], ["GMP.schedule = 'cubic'"], "Unknown GMP schedule 'cubic'"),
    (["beyond_paper/gmp_resnet18.gin"], ["GMP.frequency = 0"],
     "frequency must be an integer >= 1, got 0"),
    (["table1/random_resnet18.gin"], ["RandomPruning.distribution = 'lognormal'"],
     "Unknown sparsity distribution 'lognormal'"),
    (["table1/igq_resnet18.gin"], ["train_eval.sparsity = 0.0"], "needs a target sparsity"),
    (["table1/small_dense_resnet18.gin"], ["train_eval.arch = 'vgg16_bn'"],
     "small_dense narrows a PreActResNet-18"),
]


def test_bad_baseline_settings_are_refused_before_training(tmp_path, tiny_arch):
    for i, (files, binding, match) in enumerate(BAD_SETTINGS):
        workdir = tmp_path / f"w{i}"
        with pytest.raises(ValueError, match=match):
            run(files + ["quickstart/smoke.gin"], binding, workdir)
        assert not (workdir / "metrics.csv").exists(), binding
        assert not (workdir / "pretrain_metrics.csv").exists(), binding
    for name in ("rb", "random", "igq", "erk", "omp", "snip", "grasp", "synflow",
                 "prune_at_init", "small_dense", "gmp", "iwi"):
        assert methods.get(name).name == name


# ------------------------------------------------------------------------------------------------
# masks chosen before training (no training needed to check them)

def test_static_masks_hit_the_target_density(tmp_path, tiny_arch):
    for method in ("random", "igq", "erk", "snip", "grasp"):
        workdir = tmp_path / method
        exp = experiment(workdir, method)
        plugin = methods.get(method)(exp.config)
        net, model = plugin.prepare(exp, None)
        density = masks_lib.global_density(net)
        layers = masks_lib.masked_layers(net)
        kernels = sum(layer.kernel.shape.num_elements() for layer in layers)
        if method in ("snip", "grasp"):       # score > k-th smallest: ties may prune a few more
            assert 0.19 <= density <= 0.2 + 1 / kernels, method
        else:
            assert density == pytest.approx(0.2, abs=len(layers) / kernels), method
        for layer in layers:                  # pruned weights are zero
            assert not np.asarray(layer.kernel)[np.asarray(layer.mask) == 0].any(), method
        info = json.loads((workdir / "pruning.json").read_text())
        assert info["mask_method"] == method
        assert info["density_initial"] == pytest.approx(density)
        if method == "random":
            assert all(d == pytest.approx(0.2, abs=0.05)
                       for d in info["layer_densities_initial"].values())
        if method == "grasp":
            assert info["temperature"] == 200.0 and info["scoring_samples"] == 100


def test_small_dense_results_report_its_parameter_equivalent_sparsity(tmp_path):
    full = birds_tf.models.build("preact_resnet18", 10, (8, 8, 1))
    dense = sum(layer.kernel.shape.num_elements() for layer in masks_lib.masked_layers(full))
    for sparsity in (0.8, 0.9):
        exp = experiment(tmp_path / str(sparsity), "small_dense", arch="preact_resnet18",
                         arch_kwargs={}, sparsity=sparsity)
        plugin = methods.get("small_dense")(exp.config)
        net, model = plugin.prepare(exp, None)
        results = plugin.results(exp, model)
        kernels = sum(layer.kernel.shape.num_elements()
                      for layer in masks_lib.masked_layers(net))
        assert results["small_dense_params"] == kernels
        assert results["dense_params"] == dense
        target = (1 - sparsity) * dense
        assert abs(kernels - target) / target < 0.02
        assert results["param_equivalent_sparsity"] == pytest.approx(1 - kernels / dense)
        assert masks_lib.global_density(net) == 1.0      # trained densely


# ------------------------------------------------------------------------------------------------
# the GMP callback

def _net():
    net = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                            keras.layers.Flatten(), keras.layers.Dense(5)])
    return birds_tf.sparsify(net)


def test_gmp_callback_follows_the_polynomial_schedule_and_zeroes_momentum():
    net = _net()
    model = AdversarialModel(net, AttackConfig(steps=0))
    model.compile(optimizer=TorchSGD(0.05, momentum=0.9, l2=5e-4))
    schedule = schedules.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=6, power=3,
                                         frequency=2)
    gmp = gradual.GradualMagnitudePruning(schedule)
    layers = masks_lib.masked_layers(net)
    seen = []

    class Before(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.effective = [np.asarray(la.kernel) * np.asarray(la.mask) for la in layers]
            self.masks = [np.asarray(la.mask).copy() for la in layers]

    class After(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            opt = model.optimizer
            step = batch + 1
            moms = [np.asarray(momentum_buffer(opt, la.kernel)) if opt.built else None
                    for la in layers]
            seen.append((step, before.effective, before.masks,
                         [np.asarray(la.mask).copy() for la in layers],
                         [np.asarray(la.kernel).copy() for la in layers], moms))

    before = Before()
    rng = np.random.default_rng(0)
    x = rng.random((80, 6, 6, 1)).astype("float32")
    y = rng.integers(0, 5, 80).astype("int32")
    model.fit(x, y, batch_size=10, epochs=1, verbose=0, shuffle=False,
              callbacks=[before, gmp, After()])
    assert [e["step"] for e in gmp.events] == [2, 4, 6]
    for step, effective, old_masks, masks, kernels, moms in seen:
        should, sparsity = schedule(step)
        for w, old, mask, kernel, mom in zip(effective, old_masks, masks, kernels, moms):
            if not should:
                np.testing.assert_array_equal(mask, old)
                continue
            assert sparsity == schedule.sparsity(step)
            np.testing.assert_array_equal(mask, pruning_masks.magnitude_mask(w, sparsity)[1])
            assert int(mask.sum()) == pruning_masks.keep_count(w.size, sparsity)
            assert not kernel[mask == 0].any()
            assert mom is not None and not mom[mask == 0].any()
            assert np.abs(mom).sum() > 0           # momentum was live before the update
    # after the end step nothing changes and the target is reached in every layer
    final = [np.asarray(la.mask) for la in layers]
    for mask in final:
        assert int(mask.sum()) == pruning_masks.keep_count(mask.size, np.float32(0.8))
    np.testing.assert_allclose([e["sparsity"] for e in gmp.events],
                               [schedule.sparsity(s) for s in (2, 4, 6)])


def test_gmp_default_end_step_is_the_last_pruning_step_before_three_quarters():
    assert gradual.gmp_schedule_steps(1000) == (0, 700)
    assert gradual.gmp_schedule_steps(70400) == (0, 52800)
    assert gradual.gmp_schedule_steps(8, frequency=2) == (0, 6)
    assert gradual.gmp_schedule_steps(100, begin_step=10, frequency=30) == (10, 70)
    assert gradual.gmp_schedule_steps(100, end_step=55) == (0, 55)
    plugin = static_pruning.GMP(Config(method="gmp", sparsity=0.8), frequency=10)
    with pytest.raises(ValueError, match="never prunes"):
        plugin.make_schedule(8)
    constant = static_pruning.GMP(Config(method="gmp", sparsity=0.8),
                                  schedule="constant").make_schedule(1000)
    assert constant(100) == (True, np.float32(0.8)) and constant(800)[0] is False


# ------------------------------------------------------------------------------------------------
# end to end with smoke.gin

def test_omp_config_pretrains_prunes_and_retrains(tmp_path, tiny_arch):
    workdir = tmp_path / "omp"
    results = run(["table1/omp_resnet18.gin", "quickstart/smoke.gin"], FAST, workdir)
    assert results["method"] == "omp" and results["pretrain_epochs"] == 1
    assert results["final_sparsity"] == pytest.approx(0.8, abs=1e-3)
    pre = records.read_metrics_csv(str(workdir / "pretrain_metrics.csv"))
    assert [r["stage"] for r in pre] == ["pretrain"]
    assert [r["epoch"] for r in records.read_metrics_csv(str(workdir / "metrics.csv"))] == [1, 2]
    # Resuming the main stage neither pre-trains again nor needs anything but pruning.json.
    exp = experiment(workdir, "omp")
    plugin = static_pruning.OMP(exp.config, pretrain_epochs=1, pretrain_milestones=())
    net, _ = plugin.prepare(exp, ResumeState(stage="main", epoch=1))
    assert masks_lib.global_density(net) == 1.0
    assert plugin.results(exp, None)["pretrain_epochs"] == 1
    assert len(records.read_metrics_csv(str(workdir / "pretrain_metrics.csv"))) == 1


def test_synflow_config_runs(tmp_path, tiny_arch):
    results = run(["table1/synflow_resnet18_s90.gin", "quickstart/smoke.gin"], FAST,
                  tmp_path / "sf")
    assert results["method"] == "synflow" and results["rounds"] == 2
    assert results["schedule"] == "exponential"
    settings = results["method_settings"]
    assert (settings["scorer"], settings["rounds"], settings["schedule"]) == (
        "synflow", 2, "exponential")
    assert results["final_sparsity"] == pytest.approx(0.9, abs=0.01)
    assert all(d == pytest.approx(0.1, abs=0.01) for d in results["density_trajectory"])


def test_gmp_config_prunes_gradually_to_the_target(tmp_path, tiny_arch):
    results = run(["beyond_paper/gmp_resnet18.gin", "quickstart/smoke.gin"], FAST, tmp_path / "gmp")
    # smoke: 2 epochs x 4 steps, updates every 2 steps up to 75% of training (step 6)
    assert [e["step"] for e in results["gmp_events"]] == [2, 4, 6]
    assert results["method_settings"] == {  # gmp_resnet18.gin + smoke.gin, end step resolved
        "schedule": "polynomial", "initial_sparsity": 0.0, "power": 3, "begin_step": 0,
        "end_step": 6, "end_fraction": 0.75, "frequency": 2}
    schedule = schedules.PolynomialDecay(0.0, 0.8, 0, 6, 3, 2)
    assert [e["sparsity"] for e in results["gmp_events"]] == pytest.approx(
        [float(schedule.sparsity(s)) for s in (2, 4, 6)])
    assert results["final_sparsity"] == pytest.approx(0.8, abs=0.01)
    trajectory = results["density_trajectory"]
    assert trajectory[0] > trajectory[1] == pytest.approx(0.2, abs=0.01)
