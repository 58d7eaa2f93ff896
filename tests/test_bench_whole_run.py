"""``benchmarks/whole_run.py``: its arithmetic against hand math, its refusals before any run,
and the line end to end on tiny runs (two ``launch.train`` processes, about half a minute)."""
import json
import os

import pytest

from benchmarks import whole_run
from launch import cli

TINY = ["train_eval.arch_kwargs={'width': 2}", "train_eval.epochs=2", "train_eval.max_train=64",
        "train_eval.max_eval=16", "train_eval.final_test=False", "train_eval.train_steps=1",
        "train_eval.eval_steps=1", "train_eval.milestones=(1,)", "DynamicSparsity.delta_t=1",
        "DynamicSparsity.t_start=1"]


@pytest.fixture(autouse=True)
def quiet_flags():
    yield
    cli.set_verbosity(-1)


def test_segments_split_at_each_shrink_hand_math():
    seconds = {1: 10.0, 2: 4.0, 3: 4.0, 4: 3.0, 5: 2.0, 6: 2.0}
    shrinks = [{"epoch": 3, "channels": {}}, {"epoch": 1, "channels": {}}]
    assert whole_run.segments(seconds, shrinks) == [
        {"epochs": [1, 1], "mean_s": 10.0, "first_s": 10.0, "rest_mean_s": None},
        {"epochs": [2, 3], "mean_s": 4.0, "first_s": 4.0, "rest_mean_s": 4.0},
        {"epochs": [4, 6], "mean_s": round(7 / 3, 3), "first_s": 3.0, "rest_mean_s": 2.0}]
    # no shrink (dense): one segment; a shrink after the last epoch adds none
    assert whole_run.segments(seconds, None)[0]["epochs"] == [1, 6]
    assert len(whole_run.segments(seconds, [{"epoch": 6}])) == 1


def _line(seed, method, wall, ra, sa):
    return {"name": f"whole_run/{method}", "seed": seed, "wall_s": wall, "ra_final": ra,
            "sa_final": sa}


def test_ratios_pair_by_seed_hand_math():
    lines = [_line(1, "dense", 100.0, 40.0, 70.0), _line(1, "sparse", 50.0, 39.0, 66.0),
             _line(2, "sparse", 150.0, 42.0, 71.0), _line(2, "dense", 200.0, 41.0, 70.5),
             _line(3, "dense", 999.0, 0.0, 0.0)]  # seed 3 has no sparse run: left out
    s = whole_run.summary(lines)
    assert s["seeds"] == [1, 2]
    assert s["per_seed"] == [0.5, 0.75]
    assert s["ratio"] == 0.625                       # (0.5 + 0.75) / 2
    assert s["ratio_of_means"] == round(200 / 300, 4)  # mean 100 / mean 150
    assert s["ra_final_sparse_minus_dense"] == [-1.0, 1.0]
    assert s["sa_final_sparse_minus_dense"] == [-4.0, 0.5]
    with pytest.raises(ValueError, match="no seed has both"):
        whole_run.summary(lines[4:])


def test_steady_epoch_ratio_uses_the_last_segment_after_its_tracing_epoch():
    def line(seed, method, *segs):
        return dict(_line(seed, method, 1.0, 0.0, 0.0),
                    segments=[{"rest_mean_s": r} for r in segs])
    s = whole_run.summary([line(1, "dense", 20.0), line(1, "sparse", 30.0, 8.0),
                           line(2, "dense", 25.0), line(2, "sparse", 35.0, 12.0, 5.0)])
    assert s["steady_epoch_ratio_per_seed"] == [0.4, 0.2]  # 8 / 20, 5 / 25
    assert s["steady_epoch_ratio"] == 0.3
    # a last segment of one epoch has no steady figure: no ratio rather than a wrong one
    s = whole_run.summary([line(1, "dense", 20.0), line(1, "sparse", 30.0, None)])
    assert "steady_epoch_ratio" not in s


def test_scaled_schedule_is_the_papers_scaled_from_200_epochs():
    # 6 epochs: whole_run_cifar.gin's own values (100 -> 3, 150 -> 4.5 -> 5 rounded half up)
    assert whole_run.scaled_schedule(6) == ["train_eval.epochs = 6",
                                            "train_eval.milestones = (3, 5)",
                                            "DynamicSparsity.t_start = 3"]
    with open(os.path.join(whole_run.ROOT, "gin/beyond_paper/whole_run_cifar.gin")) as f:
        text = f.read()
    for binding in whole_run.scaled_schedule(6):
        assert binding in text
    assert whole_run.scaled_schedule(12)[1:] == ["train_eval.milestones = (6, 9)",
                                                 "DynamicSparsity.t_start = 6"]
    assert whole_run.scaled_schedule(10)[1:] == ["train_eval.milestones = (5, 8)",  # 7.5 -> 8
                                                 "DynamicSparsity.t_start = 5"]


def test_runs_alternate_and_share_the_thread_count():
    assert whole_run.run_order(3) == [(1, "dense"), (1, "sparse"), (2, "sparse"), (2, "dense"),
                                      (3, "dense"), (3, "sparse")]
    env = whole_run.thread_env(1)
    assert (env["TF_NUM_INTRAOP_THREADS"], env["TF_NUM_INTEROP_THREADS"],
            env["OMP_NUM_THREADS"]) == ("1", "1", "1")
    assert whole_run.gin_files("offline", "dense", "g.gin") == [
        "gin/table1/dense_resnet18.gin", "gin/offline/offline.gin"]
    assert whole_run.gin_files("cifar", "sparse", "g.gin") == [
        "g.gin", "gin/beyond_paper/whole_run_cifar.gin"]


@pytest.mark.parametrize("argv, says", [
    (["--seeds=0"], "flag --seeds=0"),
    (["--shape=cifar10"], "flag --shape=cifar10"),
    (["--threads=-1"], "flag --threads=-1"),
    (["--sparse_gin=gin/nope.gin"], "--sparse_gin 'gin/nope.gin' is not a file"),
    (["--sparse_gin=gin/table1/dense_resnet18.gin"], "is not a fb_plus_channel config"),
    (["--out=gin"], "--out 'gin' is a folder"),
    (["--epochs=12"], "--epochs=12 is for --shape=cifar"),
    (["--shape=cifar", "--epochs=1"], "--epochs must be at least 2"),
    (["--epochs=-1"], "flag --epochs=-1"),
])
def test_bad_input_is_refused_before_any_run(monkeypatch, argv, says):
    def started(*_, **__):
        raise AssertionError("a run started before the bad input was refused")
    monkeypatch.setattr(whole_run, "train", started)
    with pytest.raises(SystemExit) as e:
        whole_run.entry(argv)
    assert isinstance(e.value.code, str) and "\n" not in e.value.code
    assert e.value.code.startswith("benchmarks.whole_run: ") and says in e.value.code


def test_an_existing_run_folder_is_refused_and_kept(monkeypatch, tmp_path):
    monkeypatch.setattr(whole_run, "train", lambda *a, **k: pytest.fail("a run started"))
    kept = tmp_path / "offline_sparse_seed2"
    kept.mkdir()
    (kept / "metrics.csv").write_text("epoch,seconds\n1,3.0\n")
    with pytest.raises(SystemExit) as e:
        whole_run.entry(["--seeds=2", f"--workdir={tmp_path}"])
    assert "already holds" in e.value.code and str(kept) in e.value.code
    assert (kept / "metrics.csv").read_text() == "epoch,seconds\n1,3.0\n"


def test_end_to_end_on_tiny_runs(tmp_path, capsys):
    out = tmp_path / "bench" / "whole_run.json"
    argv = ["--seeds=1", f"--workdir={tmp_path / 'runs'}", f"--out={out}"]
    argv += [f"--bindings={b}" for b in TINY]
    assert whole_run.entry(argv) == 0
    printed = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert [p["name"] for p in printed] == ["header", "whole_run/dense", "whole_run/sparse",
                                            "whole_run_ratio"]
    _, dense, sparse, ratio = printed
    assert (dense["method"], sparse["method"]) == ("dense", "fb_plus_channel")
    for run in (dense, sparse):
        assert run["epochs"] == 2 and run["wall_s"] >= run["run_seconds"] > 0
        assert 0 <= run["ra_final"] <= 100 and 0 <= run["sa_final"] <= 100
    # the sparse run narrowed after epoch 1: two segments, one epoch each
    assert sparse["shrinks"][0]["epoch"] == 1 and sparse["shrinks"][0]["channels"] > 0
    assert [s["epochs"] for s in sparse["segments"]] == [[1, 1], [2, 2]]
    assert [s["epochs"] for s in dense["segments"]] == [[1, 2]]
    assert ratio["per_seed"] == [round(sparse["wall_s"] / dense["wall_s"], 4)]
    saved = json.loads(out.read_text())
    assert saved["summary"] == ratio and saved["runs"] == [dense, sparse]
    assert saved["header"]["threads"] == 1
    assert os.path.exists(tmp_path / "runs" / "offline_sparse_seed1" / "results.json")
