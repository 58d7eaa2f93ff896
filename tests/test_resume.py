"""Crash safety: killed and preempted runs resume to exactly the weights and results of an
uninterrupted run (deterministic mode), whether killed mid-epoch, mid-checkpoint, by a real
SIGKILL (whose stale workdir lock the rerun takes over) or stopped by SIGTERM mid-epoch."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = ["--gin_file=gin/table1/fb_plus_resnet18.gin", "--gin_file=gin/quickstart/smoke.gin",
        "--gin_bindings=train_eval.epochs = 3", "--gin_bindings=train_eval.max_train = 128",
        "--gin_bindings=train_eval.max_eval = 64",
        "--gin_bindings=DynamicSparsity.growth = 'random'", "--deterministic"]


def _cmd(workdir):
    return [sys.executable, "-m", "launch.train", f"--workdir={workdir}"] + ARGS


def _run(workdir, crash_at=None, check=True):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("BIRDS_TF_CRASH_AT", None)
    if crash_at:
        env["BIRDS_TF_CRASH_AT"] = crash_at
    proc = subprocess.run(_cmd(workdir), cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _outcome(workdir):
    import keras
    import birds_tf
    birds_tf.register_keras_objects()  # the custom layers, by name
    results = json.loads((workdir / "results.json").read_text())
    results.pop("seconds")
    model = keras.models.load_model(str(workdir / "checkpoints" / "final.keras"))
    from birds_tf.utils import records
    rows = records.read_metrics_csv(str(workdir / "metrics.csv"))
    for row in rows:
        row.pop("seconds")  # wall time, the one column that differs
    return results, [np.asarray(w) for w in model.weights], rows


def _assert_same(a, b):
    results_a, weights_a, rows_a = a
    results_b, weights_b, rows_b = b
    assert results_a == results_b
    assert rows_a == rows_b  # every epoch's row: running loss/RA, mask updates, densities
    assert len(weights_a) == len(weights_b)
    for wa, wb in zip(weights_a, weights_b):
        np.testing.assert_array_equal(wa, wb)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("resume") / "straight"
    _run(workdir)
    return _outcome(workdir)


def test_crash_mid_epoch_then_mid_checkpoint_then_rerun_equals_uninterrupted(tmp_path,
                                                                            uninterrupted):
    workdir = tmp_path / "crashed"
    state_path = workdir / "checkpoints" / "resume" / "state.json"
    # Killed during epoch 2's second step: epoch 1 is the last complete one.
    assert _run(workdir, crash_at="step:2:2", check=False).returncode == 137
    assert json.loads(state_path.read_text())["epoch"] == 1
    # Resumed, then killed after epoch 3's checkpoint files but before they became current.
    assert _run(workdir, crash_at="checkpoint:3", check=False).returncode == 137
    assert json.loads(state_path.read_text())["epoch"] == 2
    assert not (workdir / "results.json").exists()
    _run(workdir)
    _assert_same(_outcome(workdir), uninterrupted)


def test_sigkill_at_any_moment_then_rerun_equals_uninterrupted(tmp_path, uninterrupted):
    workdir = tmp_path / "killed"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen(_cmd(workdir), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    state = workdir / "checkpoints" / "resume" / "state.json"
    deadline = time.time() + 300
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # somewhere inside epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads((workdir / ".lock").read_text())["pid"] == proc.pid  # left behind
    rerun = _run(workdir)
    assert f"Took over the lock of pid {proc.pid}" in rerun.stderr
    _assert_same(_outcome(workdir), uninterrupted)


def test_sigterm_mid_epoch_saves_that_step_and_resumes_to_the_uninterrupted_result(
        tmp_path, uninterrupted):
    """A run held mid-epoch refuses a second launch; a real SIGTERM then saves it at that step,
    and a second SIGTERM stops the resumed part at the epoch's last step (the rerun then has
    only the epoch's end to do): the result is still the uninterrupted one."""
    workdir = tmp_path / "preempted"
    state_path = workdir / "checkpoints" / "resume" / "state.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", BIRDS_TF_CRASH_AT="stall:2:1")
    proc = subprocess.Popen(_cmd(workdir), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not state_path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    env.pop("BIRDS_TF_CRASH_AT")
    second = subprocess.run(_cmd(workdir), cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 73, second.stderr[-3000:]
    assert f"is in use by another launch.train run: pid {proc.pid} on host" in second.stderr
    proc.send_signal(signal.SIGTERM)  # held at epoch 2, step 1 (of 2)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 75, stderr[-3000:]
    assert "Stopped by SIGTERM at epoch 2, step" in stderr and "resumes from that step" in stderr
    state = json.loads(state_path.read_text())
    assert (state["epoch"], state["partial"]["epoch"]) == (1, 2)
    assert state["partial"]["step"] == 1
    assert not (workdir / ".lock").exists()  # released on the way out
    again = _run(workdir, crash_at="sigterm:2:2", check=False)  # 128 / 64: the last step
    assert again.returncode == 75, again.stderr[-3000:]
    assert json.loads(state_path.read_text())["partial"]["step"] == 2
    _run(workdir)
    _assert_same(_outcome(workdir), uninterrupted)  # metrics.csv rows included


def test_killed_while_finishing_reruns_only_the_finish(tmp_path, uninterrupted):
    """A kill after the last epoch but before results.json: the rerun trains nothing more."""
    workdir = tmp_path / "finishing"
    assert _run(workdir, crash_at="finish:3", check=False).returncode == 137
    assert not (workdir / "results.json").exists()
    _run(workdir)
    _assert_same(_outcome(workdir), uninterrupted)
