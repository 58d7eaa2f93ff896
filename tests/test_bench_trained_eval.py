"""The bench's trained-model AutoAttack line and step-ceiling line at tiny size: the per-attack
image counts (hand math and the cascade's own record), the synthetic data, the torch side's
counting wrapper, the ceiling fraction's arithmetic and the header's CPU name."""
import keras
import numpy as np
import pytest

from benchmarks import conv_ops, pgd_at, torch_ref, trained_model
from birds_tf import attacks

TINY = dict(n_iter=2, n_target_classes=2, n_queries=5)


def _linear_model(bias, scale, seed=0):
    """8x8x3 images -> Flatten -> Dense(10) with a fixed kernel and bias."""
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(10)])
    kernel = np.random.default_rng(seed).normal(0.0, scale, (192, 10)).astype("float32")
    model.layers[-1].set_weights([kernel, np.asarray(bias, np.float32)])
    return model


def test_every_attack_is_given_the_clean_correct_images_when_none_can_be_broken():
    # Class 0 leads by 50 logits; eps * |kernel|_1 is about 0.3: nothing can flip, so each
    # attack of the cascade gets exactly the clean-correct images, 4 of 6 (labels 0).
    model = _linear_model([50.0] + [0.0] * 9, 0.01)
    x = np.random.default_rng(1).random((6, 8, 8, 3)).astype("float32")
    y = np.array([0, 0, 3, 0, 7, 0], np.int32)
    with trained_model.count_autoattack() as stats:
        res = attacks.autoattack(model, x, y, return_details=True, **TINY)
    assert {k: v["images"] for k, v in stats.items()} == {name: 4 for name in attacks.STANDARD}
    assert all(v["calls"] == 1 and v["seconds"] > 0 for v in stats.values())
    assert res.robust.sum() == 4


def test_counts_match_the_cascades_own_robust_record():
    # Small margins: the attacks break some images; each attack's count must be the number the
    # cascade still held robust after the previous one (robust_accuracy_after).
    model = _linear_model([0.0] * 10, 0.2)
    x = np.random.default_rng(2).random((24, 8, 8, 3)).astype("float32")
    y = np.asarray(model(x)).argmax(-1).astype("int32")
    with trained_model.count_autoattack() as stats:
        res = attacks.autoattack(model, x, y, eps=0.02, return_details=True, **TINY)
    counted = {k: v["images"] for k, v in stats.items()}
    expected = trained_model.images_entering(res.robust_accuracy_after, len(x), attacks.STANDARD)
    assert expected["apgd-ce"] == 24
    assert counted == {k: v for k, v in expected.items() if v}
    assert min(counted.values()) < 24  # something was broken: the test sees a shrinking cascade


def test_wrappers_are_removed_afterwards():
    import importlib
    module = importlib.import_module("birds_tf.attacks.autoattack")
    before = dict(module._FUNCS)
    with pytest.raises(RuntimeError):
        with trained_model.count_autoattack():
            raise RuntimeError("boom")
    assert module._FUNCS == before


def test_images_entering_hand_math():
    ra = {"clean": 75.0, "apgd-ce": 50.0, "apgd-t": 0.0}
    assert trained_model.images_entering(ra, 8, attacks.STANDARD) == {
        "apgd-ce": 6, "apgd-t": 4, "fab-t": 0, "square": 0}


def test_synthetic_data_is_fixed_and_shares_templates_across_seeds():
    x, y = trained_model.synthetic_data(50, size=8, seed=0)
    x2, y2 = trained_model.synthetic_data(50, size=8, seed=0)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert x.shape == (50, 8, 8, 3) and x.dtype == np.float32 and y.dtype == np.int32
    assert x.min() >= 0 and x.max() <= 1 and set(y) <= set(range(10))
    # No mixing and no noise: each image is its class template, the same in every seed's set.
    a, ya = trained_model.synthetic_data(40, size=8, seed=3, mix=1e-12, noise=0.0)
    b, yb = trained_model.synthetic_data(40, size=8, seed=4, mix=1e-12, noise=0.0)
    for c in set(ya) & set(yb):
        np.testing.assert_allclose(a[ya == c][0], b[yb == c][0], atol=1e-6)
    # each template is 4x4 blocks of 2x2 pixels at size 8
    assert np.all(a[:, ::2, ::2] == a[:, 1::2, 1::2])


class _FakeAttack:
    def __init__(self, keep):
        self.keep = keep

    def forward(self, images, labels):
        return images[:self.keep]


class _FakeMulti:
    """MultiAttack's passing-on, cut down: each attack gets what the previous one returned."""

    def __init__(self, keeps):
        self.attacks = [_FakeAttack(k) for k in keeps]

    def __call__(self, images, labels):
        for atk in self.attacks:
            images = atk.forward(images, labels)
        return images


def test_reference_counting_wrapper_records_what_each_attack_is_given():
    multi = _FakeMulti([5, 3, 3, 1])
    stats = torch_ref.count_attacks(multi, ("apgd-ce", "apgd-t", "fab-t", "square"))
    multi(np.zeros((8, 2)), None)
    multi(np.zeros((4, 2)), None)
    # first call 8 -> 5 -> 3 -> 3; second 4 -> 4 -> 3 -> 3 (keep caps at the batch)
    assert {k: v["images"] for k, v in stats.items()} == {
        "apgd-ce": 12, "apgd-t": 9, "fab-t": 6, "square": 6}
    assert all(v["calls"] == 2 for v in stats.values())
    stats.clear()
    multi(np.zeros((2, 2)), None)
    assert stats["apgd-ce"]["images"] == 2 and stats["apgd-ce"]["calls"] == 1


def test_ceiling_fraction_hand_math():
    # 1 ms for every op of every shape: a PGD iteration is 16 convolutions x (forward + input
    # gradient) = 32 ms, the update 16 x 3 = 48 ms; PGD-10: 10 x 32 + 48 = 368 ms.
    times = {conv_ops._key(s, ci * 4, co * 4, st): {op: 1.0 for op in conv_ops.OPS}
             for s, ci, co, st, _ in conv_ops.SHAPES}
    assert conv_ops.step_ceiling_ms(times, 4) == 368.0
    assert conv_ops.step_ceiling_ms(times, 4, pgd_steps=2) == 2 * 32 + 48
    assert conv_ops.ceiling_fraction(0.736, times, 4) == pytest.approx(0.5)


def test_ceiling_line_from_measured_times(monkeypatch):
    times = {conv_ops._key(s, ci * 64, co * 64, st): {op: 1.0 for op in conv_ops.OPS}
             for s, ci, co, st, _ in conv_ops.SHAPES}
    slower = {k: {op: 2.0 for op in v} for k, v in times.items()}
    monkeypatch.setattr(conv_ops, "measure", lambda batch, width, repeats: (times, slower))
    # ours: 32 images at 64 images/s = 0.5 s a step against 368 ms of convolutions;
    # reference: 32 at 16 images/s = 2 s against 736 ms.
    steps = {(64, 32): ([{"images_per_s": 16.0}], [{"images_per_s": 50.0},
                                                    {"images_per_s": 64.0}]),
             (16, 64): ([{"images_per_s": 1.0}], [{"images_per_s": 1.0}])}
    (line,) = pgd_at.ceiling_lines(steps, 1)
    assert line["name"] == "step_vs_conv_ceiling/preact_resnet18_w64_b32"
    assert line["ours"] == pytest.approx(0.736) and line["reference"] == pytest.approx(0.368)
    assert line["ratio"] == pytest.approx(2.0)


def test_cpu_model_reads_lscpu(monkeypatch):
    class Done:
        stdout = "Architecture:  x86_64\n  Model name:            Intel(R) Xeon(R) 8481C\n"
    monkeypatch.setattr(pgd_at.subprocess, "run", lambda *a, **k: Done())
    assert pgd_at.cpu_model() == "Intel(R) Xeon(R) 8481C"


def test_unknown_part_is_refused_before_anything_runs():
    with pytest.raises(SystemExit) as e:
        pgd_at.entry(["--only", "steps,eval_typo"])
    assert "eval_typo" in e.value.code


def test_negative_threads_are_refused_and_a_cap_reaches_both_libraries():
    with pytest.raises(SystemExit) as e:
        pgd_at.entry(["--threads", "-1", "--only", "ceiling"])
    assert "--threads must be >= 0" in e.value.code
    assert pgd_at.thread_env(1) == {"OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1",
                                    "TF_NUM_INTEROP_THREADS": "1"}


@pytest.mark.parametrize("argv, message", [
    (["--eval", "autoattack", "--aa-settings", "2"], "--aa-settings must be two positive"),
    (["--eval", "autoattack", "--aa-settings", "0,10"], "got '0,10'"),
    (["--eval", "pgd20", "--train-steps", "3"], "belong to --eval autoattack, got --eval pgd20"),
    (["--eval", "autoattack", "--warmup-images", "-1"], "--warmup-images must be >= 0, got -1"),
])
def test_bad_evaluation_options_are_refused_before_tensorflow_runs(monkeypatch, argv, message):
    from benchmarks import ours_step

    def started(_):
        raise AssertionError("TensorFlow's settings were touched")
    monkeypatch.setattr(ours_step, "apply_thread_env", started)
    with pytest.raises(SystemExit) as e:
        ours_step.entry(argv)
    assert message in e.value.code


def test_trained_line_reports_both_sides_and_flags_an_untraced_attack(monkeypatch):
    ours = {"images_per_s": 0.08, "train_pgd_steps": 5, "train_steps": 30, "train_batch": 64,
            "train_s": 30.0, "clean_accuracy_true_labels": 1.0, "cpu_s": 70.0,
            "attacked": {"apgd-ce": 8, "apgd-t": 7, "fab-t": 7, "square": 7},
            "attack_seconds": {}, "warmup_attacked": {"apgd-ce": 1, "apgd-t": 1},
            "warmup_s": 30.0, "robust_fraction": 0.875}
    ref = {"images_per_s": 0.05, "attacked": dict(ours["attacked"]), "attack_seconds": {},
           "cpu_s": 120.0, "threads": 1, "robust_fraction": 0.625}
    monkeypatch.setattr(pgd_at, "ours", lambda **kw: ours)
    monkeypatch.setattr(pgd_at, "reference_eval", lambda *a, **kw: ref)
    line = pgd_at.trained_eval_line(True)
    assert line["images"] == 8 and line["ratio"] == pytest.approx(1.6)
    assert line["robust_images_differ"] == 2  # (0.875 - 0.625) x 8
    assert "['fab-t', 'square']" in line["warning"]
    ours["warmup_attacked"] = dict(ours["attacked"])
    assert "warning" not in pgd_at.trained_eval_line(True)
