"""launch.setting_search: bad input refused before training; a tiny candidate's choice numbers are
the validation split's (from metrics.csv and results.json), and no test number is printed.

The same tiny run checks ``train_eval.final_test`` (one training run for both, to keep the suite
short): the best and final models on the whole test split, against an independent evaluation
of the saved models."""
import glob
import json
import os
import subprocess
import sys

import gin
import pytest

from birds_tf.metrics import overfitting
from birds_tf.utils import records
from launch import setting_search

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _cwd(monkeypatch):
    monkeypatch.chdir(ROOT)
    gin.clear_config()
    yield
    gin.clear_config()


def test_every_candidate_parses_and_is_dense_on_animals():
    paths = sorted(glob.glob(os.path.join("gin", "offline", "search", "*.gin")))
    assert len(paths) >= 5
    for path in paths:
        with open(path) as f:
            head = f.readline()
        assert head.startswith(f"# Command: python -m launch.setting_search --candidate={path}")
        runs = setting_search.plan(path, 1, out=os.path.join("/nonexistent", "x"))
        from launch import common
        gin.clear_config()
        common.parse_gin(*runs[0][:2])
        bound = gin.get_bindings("train_eval")
        gin.clear_config()
        assert bound["dataset"] == "animals" and bound["final_test"] is True, path
        assert bound["epochs"] > max(bound["milestones"]), path


def test_a_candidate_path_of_the_flat_layout_still_runs_the_same_config(tmp_path):
    """gin/offline_search/ became gin/offline/search/; the old path finds the same file."""
    out = str(tmp_path / "o")
    old = setting_search.plan("gin/offline_search/c9_256img_64ep.gin", 1, out=out)
    new = setting_search.plan("gin/offline/search/c9_256img_64ep.gin", 1, out=out)
    from launch import common
    texts = []
    for files, bindings, _ in (old[0], new[0]):
        gin.clear_config()
        texts.append(common.parse_gin(files, bindings))
    assert texts[0] == texts[1] and "train_eval.dataset = 'animals'" in texts[0]


@pytest.mark.parametrize("kwargs, match", [
    (dict(candidate="gin/offline/search/nope.gin"), r"is not a gin file"),
    (dict(candidate="gin/offline/search/c5_256img_40ep.gin", seeds=0),
     r"--seeds must be an integer >= 1, got 0"),
    (dict(candidate="gin/offline/search/c5_256img_40ep.gin",
          gin_bindings=["train_eval.epochz = 3"]), r"does not parse"),
])
def test_bad_input_is_refused_before_training(tmp_path, kwargs, match):
    args = dict(seeds=1, out=str(tmp_path / "o"))
    args.update(kwargs)
    with pytest.raises(setting_search.SearchError, match=match):
        setting_search.run(**args)
    assert not (tmp_path / "o").exists()


def test_command_line_needs_a_candidate():
    proc = subprocess.run([sys.executable, "-m", "launch.setting_search"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "--candidate is required" in proc.stderr


def test_tiny_candidate_prints_validation_signs_only(tmp_path, capsys):
    candidate = tmp_path / "tiny.gin"
    candidate.write_text(
        "include 'gin/quickstart/smoke.gin'\n"
        "train_eval.epochs = 3\ntrain_eval.milestones = (2,)\ntrain_eval.max_train = 64\n"
        "train_eval.max_eval = 32\ntrain_eval.batch_size = 32\ntrain_eval.train_steps = 1\n"
        "train_eval.eval_steps = 1\ntrain_eval.final_test = True\n"
        "train_eval.final_test_steps = 2\n")
    out = tmp_path / "search"
    kept = tmp_path / "results"
    md, summary, met = setting_search.run(str(candidate), 1, str(out), verbose=0,
                                          results_dir=str(kept))
    res = json.loads((out / "seed1" / "results.json").read_text())
    history = records.read_metrics_csv(str(out / "seed1" / "metrics.csv"))
    val = [r["val_ra"] for r in history]
    assert summary["val_ra_best"][0] == max(val) and summary["val_ra_final"][0] == val[-1]
    assert summary["drop_smoothed"][0] == pytest.approx(overfitting.smoothed_drop(val))
    assert summary["rgg_val"][0] == pytest.approx(res["train_ra_final"] -
                                                  res["val_ra_final_final_attack"])
    assert met == overfitting.meets(summary["rgg_val"][0], summary["drop_smoothed"][0])
    assert "test" not in md.lower()
    choice = json.loads((out / "choice.json").read_text())
    assert choice["met"] == met and choice["candidate"] == str(candidate)
    # The kept record: validation curves and each seed's config, no test number anywhere.
    held = json.loads((kept / "tiny" / "choice.json").read_text())
    assert held == choice and held["seeds"][0]["val_ra_curve"] == val
    assert held["setting"]["max_train"] == 64 and held["setting"]["epochs"] == 3
    assert (kept / "tiny" / "seed1" / "config.gin").read_text() == \
        (out / "seed1" / "config.gin").read_text()
    assert sorted(os.listdir(kept / "tiny")) == ["choice.json", "seed1"]
    keys = [k for sd in held["seeds"] for k in sd] + list(held["setting"]) + list(held)
    assert not [k for k in keys if "test" in k and k != "final_test_steps"], keys
    _check_final_test(str(out / "seed1"), res, history)
    capsys.readouterr()
    # Rerun: the finished seed is reused, the numbers are the same.
    md_again, _, _ = setting_search.run(str(candidate), 1, str(out), verbose=0)
    assert md_again.split("\n")[2].split("|")[1:7] == md.split("\n")[2].split("|")[1:7]


def _check_final_test(workdir, res, history):
    from birds_tf import data as data_lib
    from birds_tf.experiment.train_eval import Config
    from birds_tf.training import epoch_eval
    from birds_tf.utils import workdir as workdir_lib
    c = Config.from_workdir(workdir)
    assert c.final_test and c.max_eval == 32
    full = data_lib.get_dataset(c.dataset, batch_size=c.batch_size, seed=c.seed,
                                max_train=c.max_train, augment=False)
    assert full.num_test > 32 and res["test_images"] == full.num_test
    attack = c.final_test_attack()
    assert (res["test_attack_steps"], res["test_attack_eps"]) == (2, c.eval_eps)
    for which in ("best", "final"):
        net = workdir_lib.load_model(workdir, which)
        got = epoch_eval.SplitEvaluator(net, attack, seed=c.seed)(full.test)
        assert res[f"ra_{which}"] == pytest.approx(got["ra"], abs=1e-6), which
        assert res[f"sa_{which}"] == pytest.approx(got["sa"], abs=1e-6), which
        if which == "final":
            train_ra = epoch_eval.SplitEvaluator(net, attack, seed=c.seed)(full.train_eval)["ra"]
    assert res["ra_diff"] == pytest.approx(res["ra_best"] - res["ra_final"])
    # The per-epoch figures (32 test images) stay, under epoch_*.
    best = max(range(len(history)), key=lambda i: (history[i]["val_ra"], -i))
    assert res["epoch_ra_best"] == pytest.approx(history[best]["test_ra"])
    assert res["epoch_ra_final"] == pytest.approx(history[-1]["test_ra"])
    # RGG: the final model's train RA under the same attack minus the whole-split test RA.
    assert res["train_ra_final"] == pytest.approx(train_ra, abs=1e-6)
    assert res["rgg_final"] == pytest.approx(train_ra - res["ra_final"])
    assert res["test_ra_final"] == res["ra_final"]
