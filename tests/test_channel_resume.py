"""fb_plus_channel with the model rebuilt narrower during training: a run killed right after a
shrink point resumes to exactly the weights and results of an uninterrupted run."""
import json

import numpy as np

from tests import test_resume

ARGS = ["--gin_file=gin/fb_plus_channel_resnet18.gin", "--gin_file=gin/smoke.gin",
        "--gin_bindings=train_eval.epochs = 3", "--gin_bindings=train_eval.max_train = 64",
        "--gin_bindings=train_eval.max_eval = 64", "--gin_bindings=DynamicSparsity.delta_t = 1",
        "--gin_bindings=DynamicSparsity.growth = 'random'", "--deterministic"]


def test_killed_after_a_shrink_point_resumes_to_the_uninterrupted_run(tmp_path, monkeypatch):
    monkeypatch.setattr(test_resume, "ARGS", ARGS)
    straight = tmp_path / "straight"
    test_resume._run(straight)
    expected = test_resume._outcome(straight)
    res = expected[0]
    # 1 step an epoch, removal until step 1.5: half of the 120 channels after epoch 1 (cubic:
    # round(120 * 0.5 * (1 - (1/3)^3)) = 58), the rest after epoch 2; each epoch shrinks.
    assert [e["channels_removed_total"] for e in res["channel_removal_events"]] == [58, 60]
    assert [s["epoch"] for s in res["shrinks"]] == [1, 2]
    assert res["final_sparsity_vs_original"] > res["final_sparsity"]
    model_filters = {k: v["after"] for k, v in res["channels_per_layer"].items()}
    assert sum(model_filters.values()) == 60
    # The final model is already narrow; --shrink exports it with the training's channel counts.
    from launch import export
    export.main([f"--workdir={straight}", f"--out={tmp_path / 'exported'}", "--shrink"])
    meta = json.loads((tmp_path / "exported" / "metadata.json").read_text())
    assert meta["shrink"]["shrunk_during_training"]
    assert meta["shrink"]["channels"] == res["channels_per_layer"]

    workdir = tmp_path / "crashed"
    assert test_resume._run(workdir, crash_at="shrink:1", check=False).returncode == 137
    state = json.loads((workdir / "checkpoints" / "resume" / "state.json").read_text())
    assert state["checkpoint"].endswith("shrunk-1")
    assert sum(map(len, state["callbacks"]["ChannelDynamicSparsity"]["physical"].values())) == 58
    test_resume._run(workdir)
    test_resume._assert_same(test_resume._outcome(workdir), expected)
    rows = (workdir / "metrics.csv").read_text().splitlines()
    assert len(rows) == 4 and "seconds" in rows[0].split(",")
    assert np.isfinite(float(rows[-1].split(",")[rows[0].split(",").index("seconds")]))
