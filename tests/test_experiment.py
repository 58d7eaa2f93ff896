"""The experiment layer's contracts: one Config, its workdir record, the callback order."""
import inspect
import json
import types

import gin
import numpy as np
import pytest

from birds_tf.experiment import train_eval as experiment
from birds_tf.metrics import flop_count
from birds_tf.training import callbacks as cb
from birds_tf.training import resume
from birds_tf.utils import checks
from birds_tf.utils.resume_state import ResumeState
from birds_tf.utils.workdir import Workdir


@pytest.fixture
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def test_config_is_the_one_source_of_train_eval_settings(_clean_gin):
    # train_eval takes no settings of its own; gin's train_eval.* bind Config's fields.
    assert set(inspect.signature(experiment.train_eval).parameters) == {
        "workdir", "strategy", "verbose", "config"}
    gin.parse_config(["train_eval.epochs = 7", "train_eval.milestones = [3, 5]",
                      "train_eval.arch_kwargs = {'width': 4}"])
    config = experiment.configured()
    assert (config.epochs, config.milestones, config.arch_kwargs) == (7, (3, 5), {"width": 4})
    assert config.lr == experiment.Config().lr == 0.1  # unbound: the dataclass default
    with pytest.raises(ValueError, match="'train_eval' doesn't have a parameter named 'epoch'"):
        gin.parse_config(["train_eval.epoch = 7"])


def test_config_reads_back_from_config_json_and_from_an_old_operative_config(tmp_path):
    config = experiment.Config(method="fb_plus", epochs=3, milestones=(2,), sparsity=0.8,
                               arch_kwargs={"width": 4}, seed=5)
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "config.json").write_text(json.dumps(config.as_dict()))
    assert experiment.Config.from_workdir(tmp_path / "new") == config
    # A workdir from before config.json: its operative_config.gin, read by gin's parser
    # (continuation lines, comments, other configurables and references are fine).
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "operative_config.gin").write_text(
        "# Parameters for train_eval:\n"
        "train_eval.arch_kwargs = {'width': 4}\n"
        "train_eval.epochs = 3\n"
        "train_eval.method = 'fb_plus'\n"
        "train_eval.milestones = \\\n    (2,)\n"
        "train_eval.seed = 5\n"
        "train_eval.sparsity = 0.8\n"
        "DynamicSparsity.delta_t = 900\n"
        "other/train_eval.epochs = 99\n")
    assert experiment.Config.from_workdir(tmp_path / "old") == config
    from birds_tf.utils import workdir
    with pytest.raises(workdir.NotAWorkdirError, match="config.gin"):
        (tmp_path / "empty").mkdir()
        experiment.Config.from_workdir(tmp_path / "empty")


def test_callback_slots_put_the_guard_first_and_evaluation_before_the_method(tmp_path):
    method_cb, swa_cb = object(), object()
    config = experiment.Config(sparsity=0.8, method="fb")
    exp = types.SimpleNamespace(
        config=config, history=[], splits=None, strategy=None, verbose=None,
        workdir=str(tmp_path), files=Workdir(tmp_path),
        path=lambda *parts: str(tmp_path.joinpath(*parts)),
        smoothing=types.SimpleNamespace(callbacks=lambda e, m, s: [swa_cb]))
    plugin = types.SimpleNamespace(sparse=True, callbacks=lambda e, m, s: [method_cb])
    slots, flat = experiment.main_stage_callbacks(exp, plugin, None, None)
    assert experiment.CALLBACK_SLOTS == ("guard", "evaluation", "method", "smoothing", "metrics",
                                         "models", "tensorboard", "resume", "masks", "progress")
    kinds = [type(c).__name__ for c in flat]
    assert kinds[:2] == ["NonFiniteLossGuard", "EpochEvaluation"]
    assert flat[2:4] == [method_cb, swa_cb]  # FB+ reads val_robust_loss that evaluation wrote
    assert kinds[4:] == ["MetricsWriter", "BestAndFinalModels", "TensorBoard",
                         "ResumeCheckpoint", "MaskHistory", "EpochProgress"]
    assert isinstance(slots["metrics"][0], cb.MetricsWriter)
    plugin.sparse = False
    assert "MaskHistory" not in [type(c).__name__ for c in
                                 experiment.main_stage_callbacks(exp, plugin, None, None)[1]]
    exp.verbose = 0  # a silent console: no progress line
    assert experiment.main_stage_callbacks(exp, plugin, None, None)[0]["progress"] == []


def test_restore_callback_sets_the_saved_state_by_class_name():
    class Stateful:
        state = None

        def set_state(self, state):
            self.state = state

    saved = ResumeState(stage="main", callbacks={"Stateful": {"step": 3}})
    got = resume.restore_callback(saved, Stateful())
    assert got.state == {"step": 3}
    assert resume.restore_callback(None, Stateful()).state is None
    assert resume.restore_callback(ResumeState(stage="main", callbacks={}),
                                   Stateful()).state is None
    assert resume.restore_callback(ResumeState(stage="main"), Stateful()).state is None


@pytest.mark.parametrize("value, minimum, ok", [
    (1, 1, True), (np.int64(3), 2, True), (0, 1, False), (True, 0, False), (2.0, 1, False),
    ("2", 1, False)])
def test_integer_check(value, minimum, ok):
    if ok:
        assert checks.integer("n", value, minimum) == int(value)
    else:
        with pytest.raises(ValueError, match=rf"n must be an integer >= {minimum}, got"):
            checks.integer("n", value, minimum)


def test_milestones_and_target_sparsity_checks():
    assert checks.milestones("stage1", [1, np.int32(3)], 3, "stage1_epochs") == (1, 3)
    with pytest.raises(ValueError, match=r"stage1 milestone 4 is outside 1..stage1_epochs \(3\)"):
        checks.milestones("stage1", (4,), 3, "stage1_epochs")
    config = types.SimpleNamespace(method="rb", sparsity=0.0)
    with pytest.raises(ValueError, match="'rb' needs a target sparsity.*train_eval.sparsity"):
        checks.target_sparsity(config)
    assert not checks.finite_number(float("nan")) and checks.finite_number(2)


def test_method_costs_reach_the_flops_fields():
    """A pre-stage adds (3 + 2 K1) F_dense N E1, the paper's accounting (hand math)."""
    import keras
    from birds_tf.layers import MaskedDense
    inputs = keras.Input((4,))
    net = keras.Model(inputs, MaskedDense(2, use_bias=False, name="fc")(inputs))
    config = experiment.Config(batch_size=5, train_steps=10)
    splits = types.SimpleNamespace(num_train=10)
    history = [{"epoch": 1, "density": 1.0}]
    plain = flop_count.results_fields(net, history, config, splits)
    costs = flop_count.MethodCosts(flop_count.PreStage(epochs=2, pgd_steps=1))
    with_stage = flop_count.results_fields(net, history, config, splits, costs)
    f_dense = 2 * 4 * 2  # 2 x MACs of the 4 -> 2 kernel
    assert with_stage["training_flops"] - plain["training_flops"] == pytest.approx(
        (3 + 2 * 1) * f_dense * 10 * 2)
