"""train_eval.final_test: the best and final models scored on the whole test split with the final
attack, checked against an independent evaluation of the saved models; the per-epoch figures kept
as epoch_*; bad settings refused before training."""
import json
import os

import gin
import pytest

from birds_tf import data as data_lib
from birds_tf.attacks import pgd
from birds_tf.training import epoch_eval
from birds_tf.training.adversarial import AttackConfig
from birds_tf.utils import records
from birds_tf.utils import workdir as workdir_lib
from launch import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Digits, width 4, 3 epochs of 2 steps, 32 validation images a epoch, PGD-1 per epoch.
TINY = ["train_eval.arch_kwargs = {'width': 4}", "train_eval.epochs = 3",
        "train_eval.milestones = (2,)", "train_eval.batch_size = 32",
        "train_eval.max_train = 64", "train_eval.max_eval = 32", "train_eval.train_steps = 1",
        "train_eval.eval_steps = 1", "train_eval.final_test = True",
        "train_eval.final_test_steps = 3", "train_eval.seed = 2"]


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    monkeypatch.chdir(ROOT)
    gin.clear_config()
    yield
    gin.clear_config()


def _run(workdir, bindings):
    return train.run([os.path.join(ROOT, "gin/quickstart.gin")], bindings, str(workdir),
                     verbose=0)


def test_best_and_final_scored_on_the_whole_test_split(tmp_path):
    workdir = tmp_path / "run"
    res = _run(workdir, TINY)
    assert json.loads((workdir / "results.json").read_text()) == res
    full = data_lib.get_dataset("digits", batch_size=32, seed=2, max_train=64, augment=False)
    assert full.num_test > 32 and res["test_images"] == full.num_test
    assert (res["test_attack_steps"], res["test_attack_eps"]) == (3, 0.1)
    # Independently: the saved models, PGD-3 (step 0.025) on every test image, same seed.
    attack = AttackConfig(0.1, 0.025, 3, True, "eval")
    for which in ("best", "final"):
        net = workdir_lib.load_model(str(workdir), which)
        got = epoch_eval.SplitEvaluator(net, attack, seed=2)(full.test)
        assert got["n"] == full.num_test
        assert res[f"ra_{which}"] == pytest.approx(got["ra"], abs=1e-6), which
        assert res[f"sa_{which}"] == pytest.approx(got["sa"], abs=1e-6), which
    assert res["ra_diff"] == pytest.approx(res["ra_best"] - res["ra_final"])
    # The per-epoch figures (32 test images, PGD-1) stay, under epoch_*.
    history = records.read_metrics_csv(str(workdir / "metrics.csv"))
    best = max(range(3), key=lambda i: (history[i]["val_ra"], -i))
    assert res["epoch_ra_best"] == pytest.approx(history[best]["test_ra"])
    assert res["epoch_ra_final"] == pytest.approx(history[-1]["test_ra"])
    # RGG: train RA of the final model with the same attack minus the whole-split test RA.
    net = workdir_lib.load_model(str(workdir), "final")
    train_ra = epoch_eval.SplitEvaluator(net, attack, seed=2)(full.train_eval)["ra"]
    assert res["train_ra_final"] == pytest.approx(train_ra, abs=1e-6)
    assert res["rgg_final"] == pytest.approx(train_ra - res["ra_final"])
    assert res["test_ra_final"] == res["ra_final"]
    assert res["val_ra_best"] == max(r["val_ra"] for r in history)
    assert "val_ra_final_final_attack" in res


@pytest.mark.parametrize("binding, match", [
    ("train_eval.final_test = 'yes'", "final_test must be True or False, got 'yes'"),
    ("train_eval.rgg_eval = False", "final_test = True .* needs rgg_eval = True"),
    ("train_eval.final_test_steps = 0", "steps"),
])
def test_bad_final_test_settings_are_refused_before_training(tmp_path, binding, match):
    workdir = tmp_path / "bad"
    with pytest.raises(ValueError, match=match):
        _run(workdir, TINY + [binding])
    assert not (workdir / "metrics.csv").exists()


def test_final_attack_defaults_to_the_evaluation_step():
    from birds_tf.experiment.train_eval import Config
    c = Config(eval_eps=0.1, eval_step_size=0.025, final_test=True).validate()
    assert c.final_test_attack() == AttackConfig(0.1, 0.025, 20, True, "eval")
    with pytest.raises(ValueError):
        pgd.validate(0.1, 0.025, 0)
