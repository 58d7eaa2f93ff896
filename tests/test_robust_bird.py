"""Robust Bird: the early-bird decision, the FIFO, Fast-AT's schedule, rewinding, both stages."""
import json
import os

import numpy as np
import pytest

from birds_tf.sparsity import magnitude
from birds_tf.sparsity import masks as masks_lib
from birds_tf.utils import records
from birds_tf.utils.resume_state import ResumeState
from birds_tf.experiment import robust_bird, stages
from birds_tf.sparsity import early_bird
from birds_tf.training.adversarial import AttackConfig
from birds_tf.experiment.train_eval import Config
from sparse_method_helpers import FAST, by_path, run, tiny_arch  # noqa: F401

SMOKE = ["table1/rb_resnet18.gin", "quickstart/smoke.gin"]


# ------------------------------------------------------------------------------------------------
# the decision and the FIFO, on hand-made inputs

def test_ticket_emerged_on_hand_distances():
    cases = [
        ([0.05, 0.09, 0.0], 0.1, "<", True),
        ([0.05, 0.1], 0.1, "<", False),       # the paper: max(Q) < tau
        ([0.05, 0.1], 0.1, "<=", True),       # the code: `if dist > tau: return False`
        ([0.08, 0.0800001], 0.08, "<=", False),
        ([], 0.1, "<", False),                # queue not full yet
        (None, 1.0, "<=", False),
    ]
    for distances, tau, comparison, expected in cases:
        assert early_bird.ticket_emerged(distances, tau, comparison) is expected, \
            (distances, tau, comparison)
    with pytest.raises(ValueError, match="Unknown comparison '=='"):
        early_bird.ticket_emerged([0.0], 0.1, "==")


def _mask(ones):
    m = np.zeros(10, np.float32)
    m[list(ones)] = 1
    return m


def test_fifo_compares_the_newest_mask_with_each_older_one():
    q = early_bird.MaskQueue(length=3, mode="newest")
    m1, m2, m3, m4 = _mask([0, 1]), _mask([0, 2]), _mask([0, 1, 2]), _mask([3])
    assert q.put(m1) is None and q.put(m2) is None          # not full yet
    # newest m3 vs m1 (1 differing position of 10), vs m2 (1 position); oldest first.
    assert q.put(m3) == [0.1, 0.1]
    # m1 left the queue: m4 vs m2 (0, 2, 3 differ) and vs m3 (0, 1, 2, 3 differ).
    assert q.put(m4) == [0.3, 0.4]
    assert len(q.masks) == 3
    # dicts of per-layer masks are flattened in key order, as EarlyBird's one flat vector
    d = early_bird.MaskQueue(length=2, mode="newest")
    d.put({"a": np.ones((2, 2)), "b": np.zeros(3)})
    assert d.put({"a": np.eye(2), "b": np.zeros(3)}) == [2 / 7]


def test_paper_default_queue_holds_consecutive_distances_and_official_config_the_newest(
        monkeypatch):
    # Algorithm 1, line 4: append d(m_t, m_{t-1}) to Q. By hand (10 positions): d(m2, m1) = 0.1,
    # d(m3, m2) = 0.3 (positions 1, 2, 3), then m3 again: 0.0. The code's 'newest' rule with 2
    # masks would decide after m2 already, on [d(m2, m1)].
    q = early_bird.MaskQueue(length=2)
    assert q.mode == "consecutive" and q.masks_needed == 3
    m1, m2, m3 = _mask([0]), _mask([0, 1]), _mask([0, 2, 3])
    assert q.put(m1) is None and q.put(m2) is None
    assert q.put(m3) == pytest.approx([0.1, 0.3])
    assert q.put(m3) == pytest.approx([0.3, 0.0])
    config = Config(method="rb", sparsity=0.8)
    assert robust_bird.RobustBird(config).distance_mode == "consecutive"
    detector = early_bird.EarlyBirdDetector(None, 0.2)
    assert detector.queue.mode == "consecutive"
    import gin
    from launch import common
    monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for name, mode in (("rb_resnet18.gin", "consecutive"),
                       ("rb_resnet18_official_code.gin", "newest")):  # both in gin/table1/
        gin.clear_config()
        try:
            common.parse_gin([os.path.join("gin", "table1", name)], [])
            assert gin.query_parameter("RobustBird.distance_mode") == mode, name
        finally:
            gin.clear_config()


def test_fifo_consecutive_mode_is_algorithm_1_read_literally():
    q = early_bird.MaskQueue(length=2, mode="consecutive")
    assert q.masks_needed == 3
    assert q.put(_mask([0])) is None and q.put(_mask([0, 1])) is None
    assert q.put(_mask([0, 1, 2, 3])) == [0.1, 0.2]
    assert q.put(_mask([0, 1, 2, 3])) == [0.2, 0.0]


def test_the_ticket_is_drawn_at_the_first_epoch_whose_queue_is_all_below_tau():
    # The mask settles at epoch 3, but with 3 masks in the queue epoch 4 still compares with
    # epoch 2's mask (distance 0.2): the first epoch whose two distances are < 0.15 is epoch 5.
    # A change at epoch 6 (one weight swapped: distance 0.2) would break the condition again.
    settled = _mask([0, 1, 2, 4])
    sequence = [_mask([0, 1, 2, 3]), _mask([0, 1, 4, 5]), settled, settled, settled,
                _mask([0, 1, 2, 5])]
    q = early_bird.MaskQueue(length=3, mode="newest")
    distances = [q.put(m) for m in sequence]
    assert distances[:2] == [None, None]
    assert distances[2:] == [[0.2, 0.2], [0.2, 0.0], [0.0, 0.0], [0.2, 0.2]]
    decisions = [early_bird.ticket_emerged(d, 0.15) for d in distances]
    assert decisions == [False, False, False, False, True, False]


def test_fast_at_stage_one_schedule_and_attack():
    schedule = stages.OneCycleLR(0.2, epochs=10, steps_per_epoch=4)
    assert schedule.peak_epoch == 4
    for step in (0, 5, 15, 16, 20, 39, 45):
        t = (step + 1) / 4
        expected = np.interp(t, [0, 4, 10], [0, 0.2, 0])
        assert float(schedule(step)) == pytest.approx(expected, abs=1e-7)
        assert schedule.value(step) == pytest.approx(expected)
    assert float(schedule(15)) == pytest.approx(0.2)
    config = Config(train_eps=8 / 255)
    assert stages.stage_attack("fast", config) == AttackConfig(8 / 255, 1.25 * 8 / 255, 1, True,
                                                               "train")
    assert stages.stage_attack("sgd", config).clean
    assert stages.stage_attack("pgd", config) == config.train_attack()


# ------------------------------------------------------------------------------------------------
# refusals before any work

BAD_SETTINGS = [
    ("RobustBird.tau = 0.0", r"tau .* must be in \(0, 1\], got 0.0"),
    ("RobustBird.tau = 1.5", r"tau .* must be in \(0, 1\], got 1.5"),
    ("RobustBird.stage1 = 'adam'", "Unknown stage1 training mode 'adam'"),
    ("RobustBird.stage1_epochs = 2", r"stage1_epochs \(2\) is smaller than the 3 epochs"),
    ("RobustBird.comparison = '=='", "Unknown comparison '=='"),
    ("RobustBird.rewind = 'best'", "Unknown rewind 'best'"),
    ("RobustBird.queue_length = 1", "queue_length must be an integer >= 2, got 1"),
    ("RobustBird.stage1_milestones = (5,)", "stage1 milestone 5 is outside 1..stage1_epochs"),
    ("train_eval.sparsity = 0.0", "needs a target sparsity"),
]


def test_bad_robust_bird_settings_are_refused_before_training(tmp_path, tiny_arch):
    for i, (binding, match) in enumerate(BAD_SETTINGS):
        workdir = tmp_path / f"w{i}"
        with pytest.raises(ValueError, match=match):
            run(SMOKE, FAST + [binding], workdir)
        assert not (workdir / "stage1_metrics.csv").exists(), binding
        assert not (workdir / "metrics.csv").exists(), binding


def test_paper_budget_below_the_queue_length_is_refused():
    with pytest.raises(ValueError, match=r"stage1_epochs \(4\) is smaller than the 5"):
        robust_bird.RobustBird(Config(method="rb", sparsity=0.8), stage1_epochs=4,
                               stage1_milestones=(), distance_mode="newest")
    with pytest.raises(ValueError, match=r"stage1_epochs \(5\) is smaller than the 6"):
        robust_bird.RobustBird(Config(method="rb", sparsity=0.8), stage1_epochs=5,
                               stage1_milestones=(), distance_mode="consecutive")


# ------------------------------------------------------------------------------------------------
# both stages end to end

def _spy(monkeypatch):
    captured = {}
    original = robust_bird.RobustBird.prepare

    def prepare(self, exp, state):
        net, model = original(self, exp, state)
        captured.update(plugin=self, exp=exp, net=net,
                        weights={v.path: np.array(v.numpy()) for v in net.weights},
                        optimizer_iterations=int(model.optimizer.iterations.numpy()),
                        optimizer_built=model.optimizer.built)
        return net, model

    monkeypatch.setattr(robust_bird.RobustBird, "prepare", prepare)
    return captured


def _check_ticket(captured, source):
    """Masks = the global L1 ticket of the stage-1 weights; weights = ``source`` on the mask."""
    plugin, net = captured["plugin"], captured["net"]
    stage1 = by_path(net, plugin.stage1_weights)
    kernels = {layer.name: stage1[layer.kernel.path] * stage1[layer.mask.path]
               for layer in masks_lib.masked_layers(net)}
    expected = magnitude.global_magnitude_mask_arrays(kernels, 0.2, "l1_unstructured")
    for layer in masks_lib.masked_layers(net):
        np.testing.assert_array_equal(captured["weights"][layer.mask.path], expected[layer.name])
    kept = sum(int(m.sum()) for m in expected.values())
    total = sum(m.size for m in expected.values())
    assert kept == total - round(0.8 * total)

    values = by_path(net, plugin.theta0 if source == "init" else plugin.stage1_weights)
    for path, value in captured["weights"].items():
        if path.endswith("mask"):
            continue
        layer = next((lyr for lyr in masks_lib.masked_layers(net) if lyr.kernel.path == path),
                     None)
        want = values[path] * expected[layer.name] if layer is not None else values[path]
        np.testing.assert_array_equal(value, want, err_msg=path)


def test_rb_config_runs_both_stages_and_rewinds_to_theta0(tmp_path, tiny_arch, monkeypatch):
    captured = _spy(monkeypatch)
    workdir = tmp_path / "rb"
    # tau = 1: the ticket emerges as soon as the queue of 2 consecutive-mask distances is full
    # (Algorithm 1, the paper default): after stage-1 epoch 3 of 3.
    results = run(SMOKE, FAST + ["RobustBird.tau = 1.0"], workdir)
    on_disk = json.loads((workdir / "results.json").read_text())
    assert on_disk["ticket_found"] is True and on_disk["ticket_epoch"] == 3
    assert on_disk["stage1_epochs_run"] == 3 and on_disk["rewind"] == "init"
    assert on_disk["distance_mode"] == "consecutive"
    assert on_disk["method_settings"] == {  # rb_resnet18.gin, smoke.gin, the binding above
        "stage1": "sgd", "stage1_epochs": 3, "stage1_milestones": [2], "stage1_lr": 0.1,
        "tau": 1.0, "comparison": "<", "queue_length": 2, "distance_mode": "consecutive",
        "rewind": "init"}
    history = on_disk["mask_distance_history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[0]["distances"] == [] and history[1]["distances"] == []
    assert len(history[2]["distances"]) == 2
    assert all(0 <= d < 1 for d in history[2]["distances"])
    assert on_disk["final_sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert results["ticket_epoch"] == 3
    stage1 = records.read_metrics_csv(str(workdir / "stage1_metrics.csv"))
    assert [r["epoch"] for r in stage1] == [1, 2, 3]
    assert all(r["stage"] == "stage1" for r in stage1)
    assert {"train_loss", "train_acc", "val_sa", "lr"} <= set(stage1[0])
    assert stage1[2]["mask_distance_max"] == pytest.approx(max(history[2]["distances"]))
    main = records.read_metrics_csv(str(workdir / "metrics.csv"))
    assert [r["epoch"] for r in main] == [1, 2]              # only the protocol's rows
    assert all(r["density"] == pytest.approx(0.2, abs=1e-3) for r in main)
    # Stage 2 starts afresh: an unused optimizer (no momentum or iteration count carried over
    # from stage 1's 3 epochs) and the main schedule from its first value, not stage 1's decayed
    # one (stage-1 milestone 2 would give 0.01 here; smoke's main milestone 1 gives 0.1, 0.01).
    assert captured["optimizer_iterations"] == 0 and not captured["optimizer_built"]
    c = captured["exp"].config
    assert [r["lr"] for r in main] == pytest.approx([c.lr, c.lr * c.gamma])
    # rewind='init': theta_0 (BN included) on the kept positions, zeros elsewhere.
    _check_ticket(captured, "init")
    np.testing.assert_raises(AssertionError, _check_ticket, captured, "none")

    # A resumed main stage skips stage 1 and re-reads what it needs from stage1.json.
    before = (workdir / "stage1_metrics.csv").read_text()
    exp = captured["exp"]
    plugin = robust_bird.RobustBird(exp.config, stage1_epochs=3, stage1_milestones=(2,),
                                    queue_length=2)
    net, _ = plugin.prepare(exp, ResumeState(stage="main", epoch=1))
    assert (workdir / "stage1_metrics.csv").read_text() == before
    assert masks_lib.global_density(net) == 1.0      # the checkpoint restores the masks
    assert plugin.results(exp, None)["ticket_epoch"] == 3


def test_no_ticket_uses_the_last_mask_and_says_so_and_rewind_none_keeps_weights(
        tmp_path, tiny_arch, monkeypatch):
    captured = _spy(monkeypatch)
    workdir = tmp_path / "rb_none"
    results = run(["table1/rb_resnet18_official_code.gin", "quickstart/smoke.gin"],
                  FAST + ["RobustBird.tau = 1e-9", "train_eval.epochs = 1",
                          "train_eval.milestones = ()"], workdir)
    assert results["ticket_found"] is False
    assert results["stage1_epochs_run"] == 3 and results["ticket_epoch"] == 3
    assert results["comparison"] == "<=" and results["rewind"] == "none"
    assert len(results["mask_distance_history"]) == 3
    assert os.path.exists(workdir / "stage1.json")
    # rewind='none': stage 2 starts from the last stage-1 weights (BN too) on the ticket.
    _check_ticket(captured, "none")


def test_fast_at_tickets_config_runs(tmp_path, tiny_arch):
    workdir = tmp_path / "rb_fast"
    results = run(["table_a6/rb_fast_resnet18_cifar100_s90.gin", "quickstart/smoke.gin"],
                  FAST + ["RobustBird.tau = 1.0", "RobustBird.distance_mode = 'newest'",
                          "train_eval.epochs = 1",
                          "train_eval.milestones = ()"], workdir)
    assert results["stage1"] == "fast" and results["stage1_pgd_steps"] == 1
    assert results["final_sparsity"] == pytest.approx(0.9, abs=1e-3)
    rows = records.read_metrics_csv(str(workdir / "stage1_metrics.csv"))
    # one-cycle over the 3-epoch budget: peak 0.2 at epoch 3 * 2 // 5 = 1, rate at epoch start
    schedule = stages.OneCycleLR(0.2, 3, 4)
    assert [r["lr"] for r in rows] == pytest.approx([schedule.value(0), schedule.value(4)])
