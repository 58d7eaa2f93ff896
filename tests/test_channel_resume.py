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
FILES = ["gin/fb_plus_channel_resnet18.gin", "gin/smoke.gin"]
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
