"""``results.json``'s ``method_settings``: every knob of a method's algorithm as the run used it.

Unit level (no training): each plug-in is built from gin bindings that differ from its defaults,
and its record must hold exactly those values, with the defaults of the rest written out by hand
here (read off the signatures' documented defaults, not from our own output) and the ``None``s the
run resolves resolved as it does (``t_start`` half the epochs, the cosine over every step). The
training-run side (the record reaches the file) is checked in ``test_dynamic_sparsity`` and
``test_robust_bird``.
"""
import json
import types

import gin
import numpy as np
import pytest

from birds_tf.experiment import configurables  # noqa: F401 (registers the plug-ins)
from birds_tf.experiment import method as method_lib
from birds_tf.experiment.train_eval import Config

# An Experiment stand-in: settings() reads only the steps per epoch from it.
EXP = types.SimpleNamespace(splits=types.SimpleNamespace(steps_per_epoch=7))


@pytest.fixture(autouse=True)
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def _record(method, bindings, **config):
    gin.parse_config(bindings)
    kwargs = dict(method=method, sparsity=0.8, epochs=10, seed=3, lr=0.1)
    kwargs.update(config)
    plugin = method_lib.get(method)(Config(**kwargs))
    record = plugin.settings_record(EXP)
    assert json.loads(json.dumps(record)) == record  # plain JSON, reads back the same
    return record


FB_DYNAMIC = ["DynamicSparsity.delta_t = 11", "DynamicSparsity.delta_t_late = 13",
              "DynamicSparsity.k_init = 0.3", "DynamicSparsity.k_min = 0.01",
              "DynamicSparsity.growth = 'random_bernoulli'",
              "DynamicSparsity.gradient_topk = 'all'", "DynamicSparsity.seed = 17",
              "DynamicSparsity.prune_ties = 'threshold'", "DynamicSparsity.reset_regrown = True"]
FB_EXPECTED = {"delta_t": 11, "delta_t_late": 13, "k_init": 0.3, "k_min": 0.01,
               "total_steps": 70, "growth": "random_bernoulli", "gradient_topk": "all",
               "growth_seed": 17, "prune_ties": "threshold", "reset_regrown": True}
FBP_TRIGGERS = ["DynamicSparsity.threshold = 0.5", "DynamicSparsity.queue_length = 4",
                "DynamicSparsity.t_start = 2", "DynamicSparsity.prune_ratio = 0.3",
                "DynamicSparsity.growth_ratio = 0.1"]
FBP_EXPECTED = {"threshold": 0.5, "queue_length": 4, "t_start": 2, "prune_ratio": 0.3,
                "growth_ratio": 0.1}


def test_fb_plus_records_every_bound_value():
    record = _record("fb_plus", FB_DYNAMIC + FBP_TRIGGERS + [
        "FlyingBirdPlus.distribution = 'erk'", "FlyingBirdPlus.init_seed = 5"])
    assert record == {"distribution": "erk", "init_seed": 5, **FB_EXPECTED, **FBP_EXPECTED}


def test_fb_plus_defaults_resolve_as_the_run_does():
    # Paper defaults; t_start None -> epochs // 2, total_steps None -> epochs * steps, the growth
    # seed unbound -> the run's seed, the init seed -> the run's seed.
    record = _record("fb_plus", [], epochs=9)
    assert record == {"distribution": "igq", "init_seed": 3, "delta_t": 2000,
                      "delta_t_late": None, "k_init": 0.5, "k_min": 0.005, "total_steps": 63,
                      "growth": "gradient", "gradient_topk": "empty", "growth_seed": 3,
                      "prune_ties": "exact", "reset_regrown": False, "threshold": 0.75,
                      "queue_length": 5, "t_start": 4, "prune_ratio": 0.4,
                      "growth_ratio": 0.05}
    # a bound total_steps is the cosine's length, whatever the data
    gin.parse_config(["DynamicSparsity.total_steps = 100"])
    assert method_lib.get("fb_plus")(Config(method="fb_plus", sparsity=0.8)).settings_record(
        EXP)["total_steps"] == 100


def test_fb_records_no_trigger_settings_it_never_reads():
    record = _record("fb", FB_DYNAMIC + FBP_TRIGGERS + [
        "FlyingBird.distribution = 'snip'", "FlyingBird.snip_batches = 2"])
    assert record == {"distribution": "snip", "init_seed": 3, "snip_batches": 2, **FB_EXPECTED}


def test_fb_plus_channel_adds_the_channel_schedule():
    record = _record("fb_plus_channel", FB_DYNAMIC + FBP_TRIGGERS + [
        "ChannelSchedule.channel_sparsity = 0.3", "ChannelSchedule.start = 0.1",
        "ChannelSchedule.end = 0.6", "ChannelSchedule.min_ratio = 0.25",
        "ChannelSchedule.score = 'global'",
        "FlyingBirdPlusChannel.shrink_during_training = False",
        "FlyingBirdPlusChannel.shrink_min_fraction = 0.2",
        "FlyingBirdPlusChannel.shrink_at_target = False",
        "FlyingBirdPlus.distribution = 'uniform'"])
    assert record == {"distribution": "uniform", "init_seed": 3, **FB_EXPECTED,
                      **FBP_EXPECTED, "channel_sparsity": 0.3, "channel_start": 0.1,
                      "channel_end": 0.6, "channel_min_ratio": 0.25, "channel_score": "global",
                      "shrink_during_training": False, "shrink_min_fraction": 0.2,
                      "shrink_at_target": False}


def test_robust_bird_records_stage1_and_the_detector():
    record = _record("rb", ["RobustBird.stage1_epochs = 12",
                            "RobustBird.stage1_milestones = (4, 8)",
                            "RobustBird.stage1_lr = 0.05", "RobustBird.tau = 0.08",
                            "RobustBird.comparison = '<='", "RobustBird.queue_length = 3",
                            "RobustBird.distance_mode = 'newest'", "RobustBird.rewind = 'none'"])
    assert record == {"stage1": "sgd", "stage1_epochs": 12, "stage1_milestones": [4, 8],
                      "stage1_lr": 0.05, "tau": 0.08, "comparison": "<=", "queue_length": 3,
                      "distance_mode": "newest", "rewind": "none"}
    # unbound stage1_lr is the run's lr; a 'fast' stage 1 runs one-cycle to fast_peak_lr
    gin.clear_config()
    assert _record("rb", [], lr=0.2)["stage1_lr"] == 0.2
    gin.clear_config()
    fast = _record("rb", ["RobustBird.stage1 = 'fast'", "RobustBird.fast_peak_lr = 0.3"])
    assert fast["fast_peak_lr"] == 0.3
    assert "stage1_lr" not in fast and "stage1_milestones" not in fast


def test_static_pruning_records_scorer_and_schedules():
    assert _record("prune_at_init", [
        "PruneAtInit.scorer = 'grasp'", "PruneAtInit.rounds = 3",
        "PruneAtInit.schedule = 'linear'", "PruneAtInit.samples_per_class = 4",
        "PruneAtInit.batch_size = 32", "PruneAtInit.temperature = 50.0",
        "PruneAtInit.seed = 9"]) == {
        "scorer": "grasp", "rounds": 3, "schedule": "linear", "seed": 9,
        "samples_per_class": 4, "batch_size": 32, "temperature": 50.0}
    gin.clear_config()
    # SynFlow scores an all-ones input: no prune set, no temperature
    assert _record("synflow", ["SynFlow.rounds = 5"]) == {
        "scorer": "synflow", "rounds": 5, "schedule": "exponential", "seed": 3}
    gin.clear_config()
    assert _record("random", ["RandomPruning.distribution = 'erk'",
                              "RandomPruning.init_seed = 8"]) == {
        "distribution": "erk", "init_seed": 8}
    gin.clear_config()
    assert _record("omp", ["OMP.pretrain = 'sgd'", "OMP.pretrain_epochs = 6",
                           "OMP.pretrain_milestones = (3,)",
                           "OMP.pretrain_robust_eval = True"]) == {
        "pretrain": "sgd", "pretrain_epochs": 6, "pretrain_milestones": [3],
        "pretrain_lr": 0.1, "pretrain_robust_eval": True}


def test_gmp_records_the_schedule_with_its_steps_resolved():
    # 10 epochs x 7 steps = 70; end_fraction 0.5 -> 35, the last pruning step at or before it
    # from begin 4 every 6 steps: 4 + 5 * 6 = 34.
    assert _record("gmp", ["GMP.initial_sparsity = 0.1", "GMP.power = 2", "GMP.begin_step = 4",
                           "GMP.end_fraction = 0.5", "GMP.frequency = 6"]) == {
        "schedule": "polynomial", "initial_sparsity": 0.1, "power": 2, "begin_step": 4,
        "end_step": 34, "end_fraction": 0.5, "frequency": 6}
    gin.clear_config()
    assert _record("gmp", ["GMP.schedule = 'constant'", "GMP.end_step = 50"]) == {
        "schedule": "constant", "begin_step": 0, "end_step": 50, "end_fraction": 0.75,
        "frequency": 100}


def test_iwi_and_dense_records():
    assert _record("iwi", ["InverseWeightsInheritance.prune_sparsity = 0.7",
                           "InverseWeightsInheritance.dense_epochs = 4",
                           "InverseWeightsInheritance.dense_milestones = (2,)",
                           "InverseWeightsInheritance.finetune_epochs = 3",
                           "InverseWeightsInheritance.finetune_lr = 0.02",
                           "InverseWeightsInheritance.finetune_milestones = (1, 2)"],
                   sparsity=0.0) == {
        "prune_sparsity": 0.7, "dense_epochs": 4, "dense_milestones": [2],
        "finetune_epochs": 3, "finetune_lr": 0.02, "finetune_milestones": [1, 2]}
    assert _record("dense", [], sparsity=0.0) == {}


def test_a_settings_record_refuses_objects_and_converts_numpy():
    assert method_lib.plain_settings({"a": (np.int64(2), np.float32(0.5)), "b": np.bool_(True)}) \
        == {"a": [2, 0.5], "b": True}
    with pytest.raises(TypeError, match=r"method_settings\.schedule is object"):
        method_lib.plain_settings({"schedule": object()})
