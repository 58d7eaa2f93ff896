"""fb_plus_channel with the model rebuilt narrower during training: a run interrupted right after
a shrink point resumes to exactly the weights and results of an uninterrupted run.

Everything runs in this process (three short trainings, no TensorFlow start-ups): the crash is
``resume.fault_point('shrink', 1)`` raising where ``BIRDS_TF_CRASH_AT=shrink:1`` would
``os._exit``; both leave the same files behind (``state.json`` already names the narrow
checkpoint), and a real kill at that point is what ``test_resume.py`` covers for every other
fault point.
"""
import json
import os

import gin
import numpy as np
import pytest

from birds_tf.training import resume
from tests import test_resume

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = ["gin/beyond_paper/fb_plus_channel_resnet18.gin", "gin/quickstart/smoke.gin"]
# 1 step an epoch (64 images, batch 64), a mask update (and channel removal) every step.
BINDINGS = ["train_eval.epochs = 3", "train_eval.max_train = 64", "train_eval.max_eval = 64",
            "DynamicSparsity.delta_t = 1", "DynamicSparsity.growth = 'random'"]


class _Killed(Exception):
    pass


def _train(workdir):
    from launch import train
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        gin.clear_config()
        return train.run([os.path.join(ROOT, f) for f in FILES], BINDINGS, str(workdir),
                         verbose=0)
    finally:
        gin.clear_config()
        os.chdir(cwd)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("channel_resume") / "straight"
    _train(workdir)
    return workdir


def test_shrinks_during_training_and_exports_the_trained_structure(straight, tmp_path):
    res = json.loads((straight / "results.json").read_text())
    # 1 step an epoch, removal until step 1.5: half of the 120 channels after epoch 1 (cubic:
    # round(120 * 0.5 * (1 - (1/3)^3)) = 58), the rest after epoch 2; each epoch shrinks.
    assert [e["channels_removed_total"] for e in res["channel_removal_events"]] == [58, 60]
    assert [s["epoch"] for s in res["shrinks"]] == [1, 2]
    assert res["final_sparsity_vs_original"] > res["final_sparsity"]
    settings = res["method_settings"]  # the gin files' and BINDINGS' values, resolved
    assert settings["delta_t"] == 1 and settings["growth"] == "random"
    assert settings["queue_length"] == 2 and settings["t_start"] == 1  # smoke.gin
    assert settings["total_steps"] == 3  # 3 epochs x 1 step
    assert settings["channel_sparsity"] == 0.5 and settings["channel_end"] == 0.5
    assert settings["shrink_during_training"] is True
    model_filters = {k: v["after"] for k, v in res["channels_per_layer"].items()}
    assert sum(model_filters.values()) == 60
    rows = (straight / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert len(rows) == 4 and "seconds" in header
    assert all(np.isfinite(float(r.split(",")[header.index("seconds")])) for r in rows[1:])
    # The final model is already narrow; --shrink exports it with the training's channel counts.
    from launch import export
    export.main([f"--workdir={straight}", f"--out={tmp_path / 'exported'}", "--shrink"])
    meta = json.loads((tmp_path / "exported" / "metadata.json").read_text())
    assert meta["shrink"]["shrunk_during_training"]
    assert meta["shrink"]["channels"] == res["channels_per_layer"]


def test_killed_after_a_shrink_point_resumes_to_the_uninterrupted_run(straight, tmp_path,
                                                                     monkeypatch):
    expected = test_resume._outcome(straight)
    fault = resume.fault_point

    def kill(where, epoch, step=None):
        if (where, epoch) == ("shrink", 1):
            raise _Killed()
        return fault(where, epoch, step)

    workdir = tmp_path / "crashed"
    monkeypatch.setattr(resume, "fault_point", kill)
    with pytest.raises(_Killed):
        _train(workdir)
    monkeypatch.setattr(resume, "fault_point", fault)
    state = json.loads((workdir / "checkpoints" / "resume" / "state.json").read_text())
    assert state["checkpoint"].endswith("shrunk-1") and state["epoch"] == 1
    assert sum(map(len, state["callbacks"]["ChannelDynamicSparsity"]["physical"].values())) == 58
    _train(workdir)
    test_resume._assert_same(test_resume._outcome(workdir), expected)
    assert len((workdir / "metrics.csv").read_text().splitlines()) == 4


def test_training_flops_count_each_epoch_on_the_structure_it_ran_on(straight):
    """The run narrows after epochs 1 and 2: its training FLOPs are the sum over epochs of each
    epoch's own masks (``masks/epoch_XXX.npz``, the shapes of that epoch's model) at
    ``nnz x output positions``, above the old figure that put every epoch on the final (narrow)
    structure."""
    import keras
    import birds_tf
    from birds_tf.metrics import flop_count
    from birds_tf.utils import records
    birds_tf.register_keras_objects()
    res = json.loads((straight / "results.json").read_text())
    rows = records.read_metrics_csv(str(straight / "metrics.csv"))
    final = birds_tf.flops.count(
        keras.models.load_model(str(straight / "checkpoints" / "final.keras")))
    positions = {layer.name: layer.positions for layer in final.layers if layer.weights}
    # Recorded per epoch: the structure's dense cost falls at each shrink (after epochs 1, 2).
    dense = [float(r["forward_flops_dense"]) for r in rows]
    assert dense[0] > dense[1] > dense[2] == final.flops_dense
    # One step an epoch with a mask update after it: epoch e runs on the masks it starts with.
    per_epoch = []
    for e in range(3):
        masks = records.load_mask_file(str(straight / "masks" / f"epoch_{e:03d}.npz"))
        macs = sum(np.count_nonzero(m) * positions[name] for name, m in masks.items())
        macs += sum(layer.macs for layer in final.layers if layer.weights
                    and layer.name not in masks)  # kernels without a mask (none removable)
        per_epoch.append(macs)
    expected = 2 * (2 * 2 + 3) * 64 * sum(per_epoch)  # PGD-2: 7 forwards, 64 images an epoch
    assert res["training_flops"] == pytest.approx(expected, rel=1e-9)
    assert res["flops"]["training"]["mask_updates"] == 0  # random growth: no dense gradients
    # What was reported before: every epoch's per-layer densities on the final structure.
    old_rows = [{k: v for k, v in r.items() if not k.startswith("forward_flops")} for r in rows]
    initial = {name: float(m.mean()) for name, m in records.load_mask_file(
        str(straight / "masks" / "epoch_000.npz")).items()}
    lower = flop_count.training_flops(final, old_rows, 64, 64, 2,
                                      events=res["mask_update_events"],
                                      initial_densities=initial)["total"]
    assert res["training_flops"] > 1.05 * lower
