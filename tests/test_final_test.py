"""train_eval.final_test: bad settings refused before training, the final attack's defaults.

Its figures (best and final models on the whole test split, against an independent evaluation
of the saved models) are checked on the tiny run of tests/test_setting_search.py."""
import os

import gin
import pytest

from birds_tf.attacks import pgd
from birds_tf.training.adversarial import AttackConfig
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
    return train.run([os.path.join(ROOT, "gin/quickstart/quickstart.gin")], bindings, str(workdir),
                     verbose=0)


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
