"""``python -m launch.evaluate``: attacks on a workdir, a SavedModel on an .npz, the transfer row,
and every bad input refused with the value and the fix before any attack runs."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from launch import evaluate as evaluate_cli
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Standard AutoAttack runs ~1 min here; these keep its cascade with fewer iterations/queries.
FAST_AA = ["--attack_option=autoattack.n_iter=20", "--attack_option=autoattack.n_queries=100",
           "--attack_option=autoattack.n_target_classes=3"]


# Smoke-size dense PGD-AT, trained long enough (~75% clean) for the attack ordering to mean
# something; ~45 s on 2 CPU cores.
BINDINGS = ["train_eval.epochs = 6", "train_eval.milestones = (5,)", "train_eval.max_train = 1024"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    import gin

    from launch import train
    path = str(tmp_path_factory.mktemp("evaluate") / "dense")
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        gin.clear_config()
        train.run(["gin/quickstart/quickstart.gin", "gin/quickstart/smoke.gin"], BINDINGS, path,
                  verbose=0)
    finally:
        gin.clear_config()
        os.chdir(cwd)
    return path


@pytest.fixture(scope="module")
def saved_model(workdir, tmp_path_factory):
    from birds_tf.utils import workdir as workdir_lib
    path = str(tmp_path_factory.mktemp("evaluate_sm") / "dense_sm")
    workdir_lib.load_model(workdir, "best").export(path, format="tf_saved_model", verbose=False)
    return path


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    from birds_tf.evaluation.loaders import load_split
    x, y = load_split("digits", "test", n=64)
    path = str(tmp_path_factory.mktemp("evaluate_npz") / "digits64.npz")
    np.savez(path, x=x, y=y)
    return path


def _run(argv):
    assert evaluate_cli.main(argv) == 0


def _load(path):
    with open(path) as f:
        return json.load(f)


def test_workdir_pgd_cw_autoattack(workdir, capsys):
    _run([f"--workdir={workdir}", "--n=200", "--batch_size=128"] + FAST_AA)
    out = os.path.join(workdir, "eval_test_best.json")
    report = _load(out)
    printed = capsys.readouterr()
    assert report["n"] == 200 and report["dataset"] == "digits" and report["split"] == "test"
    assert report["model"].endswith(os.path.join("checkpoints", "best.keras"))
    assert report["eps"] == pytest.approx(8 / 255)
    assert [r["attack"] for r in report["rows"]] == ["pgd20", "cw_l2", "autoattack"]
    clean = report["clean_accuracy"]
    for name, row in report["attacks"].items():
        assert row["n"] == 200 and row["seconds"] > 0
        assert 0 <= row["robust_accuracy"] <= clean
    ra = {k: v["robust_accuracy"] for k, v in report["attacks"].items()}
    assert ra["autoattack"] <= ra["pgd20"]
    assert report["worst_case_robust_accuracy"] <= min(ra.values())
    assert isinstance(report["warnings"], list)
    for name in ra:  # the table and one progress line per attack (stderr is not a terminal)
        assert f"{name} " in printed.out and f"{name}: 2 batches" in printed.err
    assert "robust acc %" in printed.out and out in printed.out


def test_saved_model_on_npz_matches_keras(workdir, saved_model, npz, tmp_path):
    import tensorflow as tf

    from birds_tf.attacks import run_attack
    from birds_tf.evaluation import SavedModelClassifier, load_classifier
    from birds_tf.evaluation.loaders import load_npz
    x, y = load_npz(npz)
    wrapped = SavedModelClassifier(saved_model)  # the attacks need input gradients through it
    xt = tf.constant(x[:4])
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(wrapped(xt, training=False)[:, 0])
    assert float(tf.reduce_sum(tf.abs(tape.gradient(loss, xt)))) > 0
    out = str(tmp_path / "sm.json")
    _run([f"--saved_model={saved_model}", f"--data={npz}", "--attacks=pgd20", f"--out={out}",
          "--batch_size=32"])
    report = _load(out)
    assert report["kind"] == "saved_model" and report["data"] == os.path.abspath(npz)
    assert report["dataset"] is None and report["n"] == 64
    keras_ra = run_attack("pgd20", load_classifier(workdir, "best"), x, y, batch_size=32)
    assert report["attacks"]["pgd20"]["robust_accuracy"] == keras_ra["robust_accuracy"]
    assert report["clean_accuracy"] == keras_ra["clean_accuracy"]


def test_transfer_row_and_saved_model_dataset(workdir, saved_model):
    # A SavedModel on a named dataset split, attacked directly and with examples crafted on the
    # workdir's final checkpoint; the report goes beside the SavedModel by default.
    _run([f"--saved_model={saved_model}", "--dataset=digits", "--split=val", "--n=64",
          "--attacks=pgd20", f"--transfer_from={workdir}", "--which=final", "--sanity=false"])
    report = _load(saved_model + ".eval_val.json")
    assert report["split"] == "val" and report["n"] == 64 and report["warnings"] == []
    t = report["transfer"]
    assert t["attack"] == "pgd20"
    assert t["source"] == os.path.join(os.path.abspath(workdir), "checkpoints", "final.keras")
    assert t["n"] == 64 and t["seconds"] > 0
    assert 0 <= t["robust_accuracy"] <= report["clean_accuracy"]
    assert [r["attack"] for r in report["rows"]] == ["pgd20", "transfer pgd20"]


def _bad_npz(tmp_path, **arrays):
    path = str(tmp_path / "bad.npz")
    np.savez(path, **arrays)
    return path


BAD = {
    "unknown_attack": (lambda wd, sm, tmp: [f"--workdir={wd}", "--attacks=pgd20,pgd100"],
                       ["'pgd100'", "allowed", "autoattack"]),
    "negative_eps": (lambda wd, sm, tmp: [f"--workdir={wd}", "--eps=-0.1"],
                     ["eps must be", ">= 0", "-0.1"]),
    "bad_eps_text": (lambda wd, sm, tmp: [f"--workdir={wd}", "--eps=eight"],
                     ["'eight'", "8/255"]),
    "not_a_model": (lambda wd, sm, tmp: [f"--workdir={tmp}"],
                    ["{tmp}", "checkpoints/best.keras", "saved_model.pb"]),
    "missing_path": (lambda wd, sm, tmp: [f"--saved_model={tmp}/nope"],
                     ["nope", "does not exist"]),
    "bad_which": (lambda wd, sm, tmp: [f"--workdir={wd}", "--which=last"],
                  ["'last'", "'best' or 'final'"]),
    "bad_split": (lambda wd, sm, tmp: [f"--workdir={wd}", "--split=dev"],
                  ["'dev'", "test, val, train"]),
    "saved_model_no_dataset": (lambda wd, sm, tmp: [f"--saved_model={sm}"],
                               ["--dataset", "--data"]),
    "npz_no_y": (lambda wd, sm, tmp: [f"--saved_model={sm}", "--data=" + _bad_npz(
        tmp, x=np.zeros((4, 8, 8, 1), np.float32))], ["no array y", "np.savez"]),
    "npz_range": (lambda wd, sm, tmp: [f"--saved_model={sm}", "--data=" + _bad_npz(
        tmp, x=np.full((4, 8, 8, 1), 255.0), y=np.zeros(4, int))], ["[0, 1]", "255"]),
    "npz_lengths": (lambda wd, sm, tmp: [f"--saved_model={sm}", "--data=" + _bad_npz(
        tmp, x=np.zeros((4, 8, 8, 1)), y=np.zeros(3, int))], ["4 images", "3 labels"]),
    "npz_shape": (lambda wd, sm, tmp: [f"--saved_model={sm}", "--data=" + _bad_npz(
        tmp, x=np.zeros((4, 16, 16, 3)), y=np.zeros(4, int))], ["(8, 8, 1)", "(16, 16, 3)"]),
    "both_models": (lambda wd, sm, tmp: [f"--workdir={wd}", f"--saved_model={sm}"],
                    ["exactly one of --workdir", "--saved_model"]),
    "unknown_option": (lambda wd, sm, tmp: [f"--workdir={wd}", "--attack_option=pgd20.stepz=3"],
                       ["stepz", "allowed"]),
    "bad_n": (lambda wd, sm, tmp: [f"--workdir={wd}", "--n=1"], ["n must be", "got 1"]),
}


def test_bad_inputs_refused_before_any_attack(workdir, saved_model, tmp_path, monkeypatch):
    import birds_tf.attacks.registry as registry
    monkeypatch.setattr(registry, "run_attack", lambda *a, **k: pytest.fail("an attack ran"))
    before = set(os.listdir(workdir))
    for case, (argv_fn, expected) in sorted(BAD.items()):
        with pytest.raises(SystemExit) as err:
            evaluate_cli.main(argv_fn(workdir, saved_model, tmp_path))
        message = str(err.value.code)
        assert message.startswith("launch.evaluate: "), (case, message)
        for piece in expected:
            piece = piece.replace("{tmp}", str(tmp_path))
            assert piece in message, (case, piece, message)
    assert set(os.listdir(workdir)) == before  # no report written


def test_cli_entry_point(tmp_path):
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "launch.evaluate", *args], cwd=ROOT, capture_output=True,
        text=True, timeout=120)
    proc = run("--help")
    assert proc.returncode == 0 and "--attack_option" in proc.stdout and "--transfer_from" in \
        proc.stdout
    proc = run(f"--workdir={tmp_path}", f"--saved_model={tmp_path}")
    assert proc.returncode == 1 and "pass exactly one of --workdir" in proc.stderr
