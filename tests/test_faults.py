"""The faults a long run meets, injected into real tiny runs: a second launch, a corrupt state or
results file, a full disk, a non-finite loss resumed with a lower rate. (SIGTERM and a stale
lock left by ``kill -9`` are in ``test_resume.py``, against its uninterrupted run.)"""
import errno
import json
import os

import gin
import keras
import pytest
import tensorflow as tf

from birds_tf.training import preemption, resume
from birds_tf.utils import lock, records
from launch import common, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["train_eval.arch_kwargs = {'width': 4}", "train_eval.epochs = 2",
        "train_eval.batch_size = 8", "train_eval.max_train = 16", "train_eval.max_eval = 8",
        "train_eval.train_steps = 1", "train_eval.eval_steps = 1", "train_eval.milestones = ()",
        "train_eval.rgg_eval = False"]


@pytest.fixture(autouse=True)
def _gin_and_cwd(monkeypatch):
    monkeypatch.chdir(ROOT)
    gin.clear_config()
    yield
    gin.clear_config()


def _run(workdir, bindings=(), **kwargs):
    gin.clear_config()
    return train.run([os.path.join(ROOT, "gin/quickstart/quickstart.gin")], TINY + list(bindings),
                     str(workdir), verbose=0, **kwargs)


def _state(workdir):
    return json.loads((workdir / "checkpoints" / "resume" / "state.json").read_text())


# -- a second launch ---------------------------------------------------------------------------
def test_a_second_launch_is_refused_naming_the_holder_and_a_dead_holders_lock_is_taken(
        tmp_path, caplog):
    workdir = tmp_path / "run"
    with lock.acquire(str(workdir), "launch.train run"):
        with pytest.raises(lock.WorkdirBusyError, match=rf"in use by another launch.train run: "
                                                        rf"pid {os.getpid()} on host"):
            _run(workdir)
        assert os.listdir(workdir) == [lock.LOCK_NAME]  # nothing written by the refused run
    assert not (workdir / lock.LOCK_NAME).exists()  # released and removed
    # A holder that died leaves its file but no flock: taken over with a warning (a real
    # kill -9: test_resume.py's SIGKILL test).
    (workdir / lock.LOCK_NAME).write_text(json.dumps({"pid": 999999999, "host": "h",
                                                       "started": "then", "command": "x"}))
    lock.acquire(str(workdir)).release()
    assert "Took over the lock of pid 999999999" in caplog.text
    assert common.fault_exit("launch.train", lock.WorkdirBusyError("busy")) == 73


def test_a_second_reproduce_into_the_same_out_is_refused_before_it_writes(tmp_path):
    from launch import reproduce
    out = tmp_path / "t1"
    with lock.acquire(str(out), "launch.reproduce sweep"):
        with pytest.raises(lock.WorkdirBusyError, match=rf"in use by another launch.reproduce "
                                                        rf"sweep: pid {os.getpid()}"):
            reproduce.run("1", 1, "smoke", str(out), ["dense"], TINY)
        assert os.listdir(out) == [lock.LOCK_NAME]


# -- a corrupt state, checkpoint or results file ------------------------------------------------
def test_corrupt_checkpoints_states_and_results_fall_back_and_never_rewrite_results(
        tmp_path, caplog):
    workdir = tmp_path / "run"
    resume_dir = workdir / "checkpoints" / "resume"
    with pytest.raises(SystemExit):  # stop after epoch 2's checkpoint, before results
        _run_with_exit_after_epoch(workdir, 2)
    assert _state(workdir)["epoch"] == 2
    # A flipped byte in epoch 2's checkpoint: its checksum fails, epoch 1 is used instead.
    data = next(resume_dir.glob("ckpt-2.data*"))
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    results = _run(workdir)
    assert "ckpt-2 does not load" in caplog.text and "Checksum" in caplog.text
    assert "(epoch 1) instead" in caplog.text
    assert [r["epoch"] for r in records.read_metrics_csv(str(workdir / "metrics.csv"))] == [1, 2]
    finished = (workdir / "results.json").read_text()
    # Finished: a torn state does not matter, results.json is returned untouched.
    (resume_dir / "state.json").write_text("{")
    assert _run(workdir) == results
    assert (workdir / "results.json").read_text() == finished
    # A torn results.json is moved aside and rewritten from the last state that loads (the
    # previous one, epoch 2: only the finish reruns).
    (workdir / "results.json").write_text('{"ra_best": 1')
    again = _run(workdir)
    assert "state.json does not load" in caplog.text and "(epoch 2) instead" in caplog.text
    assert again["ra_best"] == results["ra_best"] and again["epochs"] == 2
    assert len(list(workdir.glob("results.json.corrupt-*"))) == 1
    # No state loads at all: refused with the files named, nothing overwritten.
    (workdir / "results.json").unlink()
    (resume_dir / "state.json").write_text("{")
    for path in resume_dir.glob("ckpt-*.data*"):
        path.write_bytes(path.read_bytes()[:50])
    metrics = (workdir / "metrics.csv").read_text()
    with pytest.raises(resume.CorruptStateError, match=r"state.json does not load.*"
                                                       r"ckpt-2 does not load.*aside"):
        _run(workdir)
    assert (workdir / "metrics.csv").read_text() == metrics


def _run_with_exit_after_epoch(workdir, epoch):
    """The run, stopped right after epoch ``epoch``'s checkpoint became current."""
    save = resume.save_state

    def save_then_stop(exp, state):
        save(exp, state)
        if state.epoch == epoch and state.stage == "main":
            raise SystemExit("stopped for the test")

    resume.save_state = save_then_stop
    try:
        _run(workdir)
    finally:
        resume.save_state = save


# -- a full disk ---------------------------------------------------------------------------------
def test_a_full_disk_at_the_model_save_names_the_path_and_the_size_and_keeps_epoch_1(
        tmp_path, monkeypatch):
    workdir = tmp_path / "run"
    real_save = keras.Model.save

    def save(model, path, *args, **kwargs):
        if str(path).endswith(".tmp-final.keras") and _state_epoch(workdir) == 1:
            with open(path, "wb") as f:  # the device fills up part-way through
                f.write(b"x" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(model, path, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save", save)
    with pytest.raises(records.DiskFullError, match=r"No space left on the device writing "
                                                    r".*final.keras: it needs about [0-9.]+ [kMG]B, "
                                                    r"[0-9.]+ [kMG]B free"):
        _run(workdir)
    assert _state(workdir)["epoch"] == 1
    assert not list(workdir.rglob(".tmp-*"))
    keras.models.load_model(str(workdir / "checkpoints" / "final.keras"), compile=False)


def test_a_full_disk_at_the_checkpoint_keeps_the_previous_state(tmp_path, monkeypatch):
    workdir = tmp_path / "run"
    real_save = tf.train.CheckpointManager.save

    def save(manager, checkpoint_number=None, **kwargs):
        if checkpoint_number == 2:  # as TensorFlow reports ENOSPC
            raise tf.errors.ResourceExhaustedError(None, None, "ckpt-2: No space left on device")
        return real_save(manager, checkpoint_number=checkpoint_number, **kwargs)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", save)
    with pytest.raises(records.DiskFullError, match=r"writing .*checkpoints.resume: it needs "
                                                    r"about [0-9.]+ [kMG]B") as caught:
        _run(workdir)
    assert caught.value.exit_code == common.fault_exit("launch.train", caught.value) == 74
    assert _state(workdir)["epoch"] == 1
    resume.check_checkpoint(_state(workdir)["checkpoint"])
    monkeypatch.setattr(tf.train.CheckpointManager, "save", real_save)
    assert _run(workdir)["epochs"] == 2  # resumes once space is back
    # The export: the device fills up after the SavedModel, at the sparse weights.
    from birds_tf.export import sparse

    def savez(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sparse.np, "savez_compressed", savez)
    out = tmp_path / "export"
    with pytest.raises(records.DiskFullError, match=r"writing .*export: it needs about"):
        sparse.export_workdir(str(workdir), str(out))
    assert not out.exists()  # no half export left behind


def test_a_full_disk_at_a_record_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    records.write_json(str(path), {"ra_best": 50.0})

    def fsync(fd):
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(records.DiskFullError, match=r"results.json: it needs about 1[0-9]{2} bytes"):
        records.write_json(str(path), {"ra_best": 60.0, "padding": "x" * 100})
    assert json.loads(path.read_text()) == {"ra_best": 50.0}
    assert os.listdir(tmp_path) == ["results.json"]


def _state_epoch(workdir):
    path = workdir / "checkpoints" / "resume" / "state.json"
    return json.loads(path.read_text())["epoch"] if path.exists() else 0


# -- a non-finite loss, resumed with a lower rate -------------------------------------------------
def test_a_non_finite_loss_resumes_from_the_last_good_epoch_with_a_lower_rate(tmp_path):
    workdir = tmp_path / "nan"
    # Epoch 1 trains at lr 0.05; the schedule then multiplies it by 1e30 and the loss blows up.
    blow_up = ["train_eval.batch_size = 2", "train_eval.milestones = (1,)",
               "train_eval.gamma = 1e30"]
    with pytest.raises(FloatingPointError, match=r"at epoch 2, step \d+.*last good checkpoint "
                                                 r"\(epoch 1\).*--resume_changed_config"):
        _run(workdir, blow_up)
    assert _state(workdir)["epoch"] == 1
    lower = blow_up[:2] + ["train_eval.gamma = 0.1"]
    with pytest.raises(ValueError, match="different config.*--resume_changed_config"):
        _run(workdir, lower)
    results = _run(workdir, lower, resume_changed_config=True)
    rows = records.read_metrics_csv(str(workdir / "metrics.csv"))
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["lr"] == pytest.approx(0.05 * 0.1) and rows[1]["train_loss"] < 1e3
    assert results["config_changes"][0]["from_epoch"] == 2
    kept = workdir / results["config_changes"][0]["previous_config"]
    assert "train_eval.gamma = 1e+30" in kept.read_text()
    assert "train_eval.gamma = 0.1" in (workdir / "config.gin").read_text()
    with pytest.raises(ValueError, match="holds a finished run.*never changed"):
        _run(workdir, blow_up, resume_changed_config=True)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "config.gin").write_text("# another config\n")
    with pytest.raises(ValueError, match="has no resume state to continue"):
        _run(fresh, lower, resume_changed_config=True)
    assert os.listdir(fresh) == ["config.gin"]


def test_sigterm_outside_the_training_steps_stops_at_once_with_its_exit_code():
    import signal
    with preemption.on_sigterm():
        with pytest.raises(preemption.Preempted, match="Rerun the same command") as caught:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs at the next bytecode
                pass
    assert common.fault_exit("launch.train", caught.value) == 75


def test_sigterm_without_mid_epoch_saving_stops_at_the_step_and_writes_nothing(tmp_path):
    """fb_plus_channel and multi-worker runs: the rerun starts the epoch again."""
    import signal
    import types
    exp = types.SimpleNamespace(workdir=str(tmp_path),
                                path=lambda *parts: str(tmp_path.joinpath(*parts)))
    callback = resume.ResumeCheckpoint(exp, None, None, mid_epoch=False)
    callback.on_epoch_begin(4)
    with preemption.on_sigterm(), preemption.step_boundary():
        os.kill(os.getpid(), signal.SIGTERM)  # armed: only sets the request
        for _ in range(1000):  # the handler runs at the next bytecode
            pass
        assert preemption.requested()
        with pytest.raises(preemption.Preempted, match=r"epoch 5, step 1; this run .* saves no "
                                                       r"mid-epoch state .*epoch \(4\)"):
            callback.on_train_batch_end(0)
    assert not preemption.requested() and os.listdir(tmp_path) == []
