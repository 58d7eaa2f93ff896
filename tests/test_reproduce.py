"""launch.reproduce: bad input refused before training; a smoke-size table over two rows x two
seeds, with an interrupted run resumed and finished runs reused; the numbers are the seeds'."""
import json
import os
import subprocess
import sys

import gin
import numpy as np
import pytest

from birds_tf.utils import workdir as workdir_lib
from launch import reproduce

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Even smaller than gin/quickstart/smoke.gin: 2 steps an epoch, 32 evaluation images, PGD-1.
TINY = ["train_eval.max_train = 64", "train_eval.batch_size = 32", "train_eval.max_eval = 32",
        "train_eval.train_steps = 1", "train_eval.eval_steps = 1"]


@pytest.fixture(autouse=True)
def _cwd(monkeypatch):
    monkeypatch.chdir(ROOT)
    gin.clear_config()
    yield
    gin.clear_config()


def _tree(path):
    return sorted(os.path.relpath(os.path.join(d, f), path)
                  for d, _, files in os.walk(path) for f in files)


@pytest.mark.parametrize("kwargs, match", [
    (dict(table="7"), r"Unknown table '7'.*cover tables 1, 2, 3, A6"),
    (dict(table="1", seeds=0), r"--seeds must be an integer >= 1, got 0"),
    (dict(table="1", rows=["dense", "lottery"]), r"Table 1 has no row 'lottery'; its rows: dense"),
])
def test_bad_input_is_refused_before_training(tmp_path, kwargs, match):
    out = tmp_path / "out"
    args = dict(seeds=1, scale="smoke", out=str(out))
    args.update(kwargs)
    with pytest.raises(reproduce.ReproduceError, match=match):
        reproduce.run(**args)
    assert not out.exists()


def test_a_row_whose_config_is_missing_is_refused_before_training(tmp_path, monkeypatch):
    # Every row has its config today; a checkout that lost one must still fail early and clearly.
    from birds_tf.experiment import configs
    find = configs.find_config
    monkeypatch.setattr(configs, "find_config",
                        lambda p: None if p == "gin/table_a10/omp_vgg16.gin" else find(p))
    out = tmp_path / "out"
    with pytest.raises(reproduce.ReproduceError, match=r"Table A10 needs configs that do not "
                       r"exist: gin/table_a10/omp_vgg16.gin \(row omp\).*--rows=dense"):
        reproduce.run(table="A10", seeds=1, scale="smoke", out=str(out), rows=["dense", "omp"])
    assert not out.exists()


def test_out_holding_another_table_or_other_files_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / reproduce.MARKER).write_text(json.dumps({"table": "2", "scale": "smoke"}))
    (out / "dense").mkdir()
    before = _tree(out)
    with pytest.raises(reproduce.ReproduceError,
                       match=r"holds table 2 at scale smoke, not table 1 at scale smoke"):
        reproduce.run("1", 1, "smoke", str(out), ["dense"])
    with pytest.raises(reproduce.ReproduceError, match=r"not table 2 at scale offline"):
        reproduce.run("2", 1, "offline", str(out), ["dense"])
    assert _tree(out) == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(reproduce.ReproduceError, match=r"not empty and was not made by"):
        reproduce.run("1", 1, "smoke", str(other), ["dense"])
    assert _tree(other) == ["notes.txt"]


def test_command_line_error_is_one_clear_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "launch.reproduce", "--table=9", "--seeds=1",
                           f"--out={tmp_path / 'o'}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0
    assert "launch.reproduce: Unknown table '9'" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_smoke_table_two_rows_two_seeds_resumes_an_interrupted_run(tmp_path, capsys):
    out = tmp_path / "t1"
    # 1) Killed (like kill -9) in epoch 2 of the first run, dense seed 1.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", BIRDS_TF_CRASH_AT="step:2:1")
    cmd = [sys.executable, "-m", "launch.reproduce", "--table=1", "--scale=smoke", "--seeds=2",
           "--rows=dense,fb_plus", f"--out={out}"] + [f"--extra_gin_bindings={b}" for b in TINY]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 137, proc.stderr[-3000:]
    assert "row dense seed 1: training" in proc.stdout
    # TensorFlow's C++ start-up lines stay off the console (launch/quiet.py).
    assert "oneDNN custom operations" not in proc.stderr and "cuInit" not in proc.stderr
    state = json.loads((out / "dense" / "seed1" / "checkpoints" / "resume" /
                        "state.json").read_text())
    assert state["epoch"] == 1 and not (out / "dense" / "seed1" / "results.json").exists()
    assert not (out / "dense" / "seed2").exists()
    # 2) The same command again: dense seed 1 resumes from epoch 1, the other three train.
    capsys.readouterr()
    md, _, _, _ = reproduce.run("1", 2, "smoke", str(out), ["dense", "fb_plus"], TINY)
    printed = capsys.readouterr().out
    assert "row dense seed 1: resumed" in printed
    for run in ("dense seed 2", "fb_plus seed 1", "fb_plus seed 2"):
        assert f"row {run}: training" in printed
    metrics = (out / "dense" / "seed1" / "metrics.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in metrics[1:]] == ["1", "2"]
    files = {(row, k): out / row / f"seed{k}" / "results.json"
             for row in ("dense", "fb_plus") for k in (1, 2)}
    saved = {key: path.read_text() for key, path in files.items()}
    results = {key: json.loads(text) for key, text in saved.items()}
    # 3) Once more: every run is reused untouched, the table is the same.
    md_again, _, _, _ = reproduce.run("1", 2, "smoke", str(out), ["dense", "fb_plus"], TINY)
    assert capsys.readouterr().out.count(": reused") == 4
    assert {key: path.read_text() for key, path in files.items()} == saved
    assert md_again == md
    # 4) Results as data: --results_dir copies each run's small files and the table ...
    kept = tmp_path / "results" / "table1_smoke"
    md_kept, _, _, _ = reproduce.run("1", 2, "smoke", str(out), ["dense", "fb_plus"], TINY,
                                     results_dir=str(kept))
    assert md_kept == md
    assert sorted(os.listdir(kept / "fb_plus" / "seed2")) == sorted(workdir_lib.RESULT_FILES)
    assert (kept / "fb_plus" / "seed2" / "results.json").read_text() == \
        saved[("fb_plus", 2)]
    assert (kept / "table.csv").read_text() == (out / "table.csv").read_text()
    record = json.loads((kept / "dense" / "seed1" / "run.json").read_text())
    assert record["cpu_count"] == os.cpu_count() and record["tensorflow"]
    assert sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(kept)
               for f in fs) < 200_000                                   # kilobytes, no models
    # ... and a committed run counts as finished: a fresh --out trains nothing.
    capsys.readouterr()
    md_committed, _, _, _ = reproduce.run("1", 2, "smoke", str(tmp_path / "elsewhere"),
                                          ["dense", "fb_plus"], TINY, results_dir=str(kept))
    assert capsys.readouterr().out.count(": committed") == 4
    assert md_committed == md and not (tmp_path / "elsewhere" / "dense" / "seed1").exists()
    # A committed run with another config is refused before any training.
    with pytest.raises(reproduce.ReproduceError, match=r"another config.*--results_dir"):
        reproduce.run("1", 2, "smoke", str(tmp_path / "third"), ["dense"],
                      TINY + ["train_eval.lr = 0.01"], results_dir=str(kept))
    assert not (tmp_path / "third" / "dense").exists()
    # The table: mean and sample std over the two seeds, the paper's value, the difference.
    import csv
    with open(out / "table.csv") as f:
        rows = {r["row"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"dense", "fb_plus"}
    for row in ("dense", "fb_plus"):
        ra = [results[(row, k)]["ra_best"] for k in (1, 2)]
        assert float(rows[row]["seeds"]) == 2
        assert float(rows[row]["ra_best_mean"]) == pytest.approx(np.mean(ra))
        assert float(rows[row]["ra_best_std"]) == pytest.approx(abs(ra[0] - ra[1]) / np.sqrt(2))
    assert float(rows["fb_plus"]["ra_best_paper"]) == 51.70
    assert float(rows["fb_plus"]["ra_best_diff"]) == pytest.approx(
        np.mean([results[("fb_plus", k)]["ra_best"] for k in (1, 2)]) - 51.70)
    rgg = {row: np.mean([results[(row, k)]["rgg_final"] for k in (1, 2)])
           for row in ("dense", "fb_plus")}
    assert float(rows["fb_plus"]["rgg_reduction_mean"]) == pytest.approx(
        rgg["dense"] - rgg["fb_plus"])
    assert float(rows["fb_plus"]["rgg_reduction_paper"]) == 14.93
    assert (out / "table.md").read_text().strip() == md.strip()
    assert "Flying Bird+" in md and "ours (n=2)" in md and "| paper | 51.70 | 47.51" in md
    # The HParams summary: one trial per run.
    from tensorboard.backend.event_processing import event_accumulator
    trial = event_accumulator.EventAccumulator(str(out / "hparams" / "fb_plus" / "seed2"),
                                               size_guidance={"tensors": 0})
    trial.Reload()
    tags = trial.Tags()["tensors"]
    assert "results/rgg_final" in tags and "results/ra_best" in tags
    import tensorflow as tf
    value = float(tf.make_ndarray(trial.Tensors("results/rgg_final")[0].tensor_proto))
    assert value == pytest.approx(results[("fb_plus", 2)]["rgg_final"], abs=1e-4)
