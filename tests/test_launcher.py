"""The launcher end to end on tfds mock CIFAR-10 and on digits, and the refusals before work."""
import json
import os
import subprocess
import sys

import gin
import pytest

from birds_tf.utils import records
from launch import train
from tests import cifar_mock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["train_eval.arch_kwargs = {'width': 4}", "train_eval.epochs = 1",
        "train_eval.batch_size = 8", "train_eval.max_train = 16", "train_eval.max_eval = 8",
        "train_eval.train_steps = 1", "train_eval.eval_steps = 1", "train_eval.milestones = ()"]
RESULT_KEYS = {"method", "arch", "dataset", "epochs", "best_epoch", "target_sparsity",
               "final_sparsity", "ra_best", "ra_final", "ra_diff", "sa_best", "sa_final",
               "sa_diff", "train_ra_final", "test_ra_final", "rgg_final"}


@pytest.fixture(autouse=True)
def _gin_and_cwd(monkeypatch):
    monkeypatch.chdir(ROOT)
    gin.clear_config()
    yield
    gin.clear_config()


def _run(workdir, files, bindings, **kwargs):
    return train.run([os.path.join(ROOT, f) for f in files], bindings, str(workdir), verbose=0,
                     **kwargs)


def test_two_steps_on_mock_cifar10_write_every_file(tmp_path):
    workdir = tmp_path / "dense"
    with cifar_mock.mock():
        results = _run(workdir, ["gin/table1/dense_resnet18.gin"], TINY)
    for name in ("config.gin", "operative_config.gin", "metrics.csv", "results.json",
                 "checkpoints/best.keras", "checkpoints/final.keras",
                 "checkpoints/resume/state.json"):
        assert (workdir / name).exists(), name
    assert any((workdir / "tensorboard").rglob("events.out.tfevents*"))
    on_disk = json.loads((workdir / "results.json").read_text())
    assert RESULT_KEYS <= set(on_disk)
    assert on_disk["dataset"] == "cifar10" and on_disk["final_sparsity"] == 0.0
    assert on_disk["rgg_final"] == pytest.approx(on_disk["train_ra_final"] -
                                                 on_disk["test_ra_final"])
    rows = records.read_metrics_csv(str(workdir / "metrics.csv"))
    assert len(rows) == 1
    assert set(records.METRIC_COLUMNS) - {"test_robust_loss"} <= set(rows[0])
    assert "train_eval.dataset = 'cifar10'" in (workdir / "operative_config.gin").read_text()
    assert results["ra_best"] == on_disk["ra_best"]


def test_rerun_is_idempotent_and_a_different_config_is_refused(tmp_path):
    workdir = tmp_path / "run"
    bindings = TINY + ["train_eval.max_train = 8"]
    first = _run(workdir, ["gin/quickstart/quickstart.gin"], bindings)
    results_before = (workdir / "results.json").read_text()
    gin.clear_config()
    # finished: reused, not retrained
    again = _run(workdir, ["gin/quickstart/quickstart.gin"], bindings)
    assert again == first and (workdir / "results.json").read_text() == results_before
    gin.clear_config()
    with pytest.raises(ValueError, match="different config.*--overwrite"):
        _run(workdir, ["gin/quickstart/quickstart.gin"], bindings + ["train_eval.lr = 0.2"])
    assert (workdir / "results.json").read_text() == results_before
    gin.clear_config()
    _run(workdir, ["gin/quickstart/quickstart.gin"], bindings + ["train_eval.lr = 0.2"],
         overwrite=True)
    backups = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(backups) == 1 and (backups[0] / "results.json").read_text() == results_before


@pytest.mark.parametrize("binding,match", [
    ("train_eval.dataset = 'mnist'", "Unknown dataset 'mnist'"),
    ("train_eval.train_eps = -0.1", "eps must be a number >= 0.*-0.1"),
    ("train_eval.train_steps = 0", "steps must be an integer >= 1, got 0"),
    ("train_eval.eval_steps = 0", "steps must be an integer >= 1, got 0"),
    ("train_eval.arch = 'resnet9'", "Unknown architecture 'resnet9'"),
    ("train_eval.method = 'lottery'", "Unknown method 'lottery'"),
    ("train_eval.milestones = (5,)", "milestone 5 is outside 1..epochs"),
    ("train_eval.sparsity = 1.0", r"sparsity must be in \[0, 1\)"),
    ("train_eval.epochs = 0", "epochs must be an integer >= 1, got 0"),
    ("train_eval.epochs = 1 2",                      # the ninth binding, after TINY's eight
     r"Gin syntax error in --gin_bindings, line 9: Expected newline. \('train_eval.epochs = 1 2"),
    ("train_eval.epochs = (", "Gin syntax error.*unclosed bracket or quote"),
])
def test_bad_input_is_refused_before_training(tmp_path, binding, match):
    workdir = tmp_path / "bad"
    with pytest.raises(ValueError, match=match):
        _run(workdir, ["gin/quickstart/quickstart.gin"], TINY + [binding])
    assert not (workdir / "metrics.csv").exists()


def test_unknown_gin_binding_fails_from_the_command_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "launch.train", "--gin_file=gin/quickstart/quickstart.gin",
         "--gin_bindings=train_eval.learning_rate = 0.1", f"--workdir={tmp_path / 'x'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    # gin's message and the binding it names, on one line, with no traceback (launch.cli.run)
    assert proc.stderr.strip().splitlines() == [
        "launch.train: Configurable 'train_eval' doesn't have a parameter named 'learning_rate'. "
        "In bindings string line 1 train_eval.learning_rate = 0.1"], proc.stderr[-3000:]
    assert not (tmp_path / "x" / "metrics.csv").exists()


def test_missing_cifar_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="tfds build cifar10"):
        _run(tmp_path / "w", ["gin/table1/dense_resnet18.gin"],
             TINY + [f"train_eval.data_dir = '{tmp_path / 'nodata'}'"])


def test_non_finite_loss_stops_the_run_before_anything_bad_is_saved(tmp_path):
    workdir = tmp_path / "nan"
    with pytest.raises(FloatingPointError, match=r"became (nan|inf).*last good checkpoint"):
        # Batches of 2 give 8 steps: with BatchNormalization absorbing the weights' scale
        # (the fused kernel does not overflow), the loss turns NaN at the third step.
        _run(workdir, ["gin/quickstart/quickstart.gin"], TINY + ["train_eval.lr = 1e30",
                                                      "train_eval.batch_size = 2"])
    assert not (workdir / "results.json").exists()
    assert not (workdir / "checkpoints" / "final.keras").exists()


def _train_cli(workdir, *extra):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # the default
    bindings = [f"--gin_bindings={b}" for b in TINY + ["train_eval.epochs = 2",
                                                        "train_eval.max_train = 8"]]
    return subprocess.run(
        [sys.executable, "-m", "launch.train", "--gin_file=gin/quickstart/quickstart_fb_plus.gin",
         *bindings, f"--workdir={workdir}", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


def test_console_is_one_line_per_epoch_without_start_up_noise(tmp_path):
    proc = _train_cli(tmp_path / "quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = proc.stdout + proc.stderr
    for noise in ("cuInit", "oneDNN", "cuda", "Sharding callback", "absl::InitializeLog",
                  "density/", " - ra: "):
        assert noise not in console, (noise, console[-3000:])
    epochs = [ln for ln in proc.stdout.splitlines() if ln.startswith("epoch ")]
    assert [ln.split("  ")[0] for ln in epochs] == ["epoch 1/2", "epoch 2/2"], proc.stdout
    for piece in ("loss ", "train RA ", "val SA ", "test SA ", " RA ", "density 20.0%", "k "):
        assert piece in epochs[0], (piece, epochs[0])
    assert proc.stdout.splitlines()[-1].startswith("results: method=fb_plus")
    assert proc.stderr.strip() == "", proc.stderr[-3000:]


def test_verbosity_zero_brings_the_detail_back(tmp_path):
    proc = _train_cli(tmp_path / "loud", "--verbosity=0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = proc.stdout + proc.stderr
    assert "Sharding callback" in console          # absl INFO from TensorFlow
    assert "density/" in console and "val_sa" in console   # Keras' full epoch line
    assert any(ln.startswith("epoch 1/2") for ln in proc.stdout.splitlines())


@pytest.mark.parametrize("launcher", ["train", "evaluate", "export", "plot", "report",
                                      "reproduce", "demo"])
def test_every_launcher_has_the_same_help_and_verbosity_flag(launcher):
    code = ("import sys, runpy\nsys.argv = ['x', '--helpfull']\n"
            f"try:\n    runpy.run_module('launch.{launcher}', run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code in (0, None), e.code\n"
            "assert 'tensorflow' not in sys.modules, 'help imported TensorFlow'\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if launcher != "demo":                            # the demo has the shared flags only
        assert f"launch.{launcher} flags:" in proc.stdout
    assert "-v,--verbosity" in proc.stdout and "shared flags" in proc.stdout
    assert "usage:" not in proc.stdout                # no argparse left


def test_a_bad_flag_is_one_line_naming_the_launcher():
    for launcher in ("export", "plot", "report"):
        proc = subprocess.run([sys.executable, "-m", f"launch.{launcher}", "--no_such_flag=1",
                               "x"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0
        assert proc.stderr.strip().splitlines()[-1].startswith(f"launch.{launcher}: "), \
            proc.stderr
        assert "no_such_flag" in proc.stderr


# One bad input per launcher, each refused before TensorFlow starts (about a second each).
BAD_INPUT = {
    "train": (["--gin_file=gin/nope.gin", "--workdir={tmp}/w"],
              "launch.train: Gin file 'gin/nope.gin' not found. Configs are looked up as given "
              "(relative to the current directory {root}), then in birds-tf's configs folder "
              "{root}/gin, by name (e.g. --gin_file=fb_plus_resnet18.gin or "
              "--gin_file=gin/table1/fb_plus_resnet18.gin). Did you mean gin/quickstart/smoke.gin, "
              "gin/offline/offline.gin?"),
    "evaluate": (["--workdir={tmp}", "--eps=8/0"],
                 "launch.evaluate: --eps must be a number or a fraction like 8/255, got '8/0'."),
    "export": (["--workdir={tmp}/nope", "--out={tmp}/out"],
               "launch.export: '{tmp}/nope' is not a workdir: no such directory."),
    "plot": (["--workdir={tmp}/nope"],
             "launch.plot: '{tmp}/nope' is not a workdir: no such directory."),
    "report": (["{tmp}"], "launch.report: '{tmp}' is not a finished launch.train workdir: it has "
                          "no results.json (train into it with python -m launch.train "
                          "--workdir=...)."),
    "reproduce": ([], "launch.reproduce: --table is required (1, 2, 3, A6, A10, A11, A12 or "
                      "A17)."),
    "demo": (["extra"], "launch.demo: unexpected arguments ['extra']; every setting is a "
                        "--flag=value."),
}


def _launch(launcher, args, tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    return subprocess.run([sys.executable, "-m", f"launch.{launcher}", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("launcher", sorted(BAD_INPUT))
def test_a_bad_input_is_its_message_alone(launcher, tmp_path):
    args, message = BAD_INPUT[launcher]
    proc = _launch(launcher, args, tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stdout == ""
    assert proc.stderr == message.replace("{tmp}", str(tmp_path)).replace("{root}", ROOT) + "\n"
    assert sorted(os.listdir(tmp_path)) == []              # nothing written


@pytest.mark.parametrize("launcher,last", [
    ("train", "birds_tf.experiment.configs.ConfigNotFoundError: Gin file 'gin/nope.gin' not "
              "found"),   # raised as is
    ("report", "launch.report: '{tmp}' is not a finished"),      # SystemExit names the cause
])
def test_verbosity_zero_adds_the_traceback(launcher, last, tmp_path):
    proc = _launch(launcher, BAD_INPUT[launcher][0] + ["--verbosity=0"], tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):", proc.stderr
    assert lines[-1].startswith(last.replace("{tmp}", str(tmp_path))), proc.stderr
    assert any("NotAWorkdirError" in ln for ln in lines) == (launcher == "report")
