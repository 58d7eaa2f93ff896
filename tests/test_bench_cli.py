"""Every benchmark entry point (``python -m benchmarks.X``) refuses a bad input as the launchers
do (launch/cli.py): one line ``benchmarks.X: message`` naming the bad value, exit status 1, no
traceback (``--verbosity=0`` brings it back), and nothing heavy started: the functions that
would start TensorFlow, a subprocess, a venv or read the runs are replaced by ones that fail
the test if called."""
import os
import subprocess
import sys

import pytest

from benchmarks import conv_ops, conv_sides, device_bench, official_agreement, ours_step, pgd_at
from benchmarks import serving
from launch import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAVED = os.path.join(ROOT, "results", "side_by_side", "dense")


def _heavy(*_, **__):
    raise AssertionError("heavy work started before the bad input was refused")


@pytest.fixture(autouse=True)
def no_heavy_work(monkeypatch):
    """What each benchmark does first once its input is accepted."""
    import launch.quiet
    for module, name in ((pgd_at, "header"), (pgd_at, "_json_line"), (pgd_at, "torch_python"),
                         (pgd_at, "ours"), (conv_ops, "measure"), (conv_sides, "tf_side"),
                         (ours_step, "apply_thread_env"), (ours_step, "_pipeline"),
                         (device_bench, "gpu_name"), (official_agreement, "collect"),
                         (official_agreement, "report"), (launch.quiet, "start_tensorflow")):
        monkeypatch.setattr(module, name, _heavy)
    yield
    cli.set_verbosity(-1)


def _refused(module, argv):
    """The one-line message ``module.entry(argv)`` exits with."""
    with pytest.raises(SystemExit) as e:
        module.entry(argv)
    message = e.value.code
    assert isinstance(message, str), message  # a message: exit status 1
    assert "\n" not in message
    assert message.startswith(f"{module.PROG}: "), message
    return message


@pytest.mark.parametrize("argv, says", [
    (["--repeats=-1"], "--repeats must be >= 0 (0: the default), got -1"),
    (["--threads", "-2"], "--threads must be >= 0 (0: the default), got -2"),
    (["--only=steps,evl"], "--only names unknown part(s) ['evl']"),
    (["--repeats=two"], "flag --repeats=two"),
    (["--quik"], "Unknown command line flag 'quik'"),
    (["quick"], "unexpected arguments ['quick']"),
])
def test_pgd_at(argv, says):
    assert says in _refused(pgd_at, argv)


def test_pgd_at_without_the_reference_script(monkeypatch, tmp_path):
    monkeypatch.setattr(pgd_at, "TORCH_SCRIPT", str(tmp_path / "torch_pgd_at.py"))
    message = _refused(pgd_at, ["--only=ceiling"])
    assert str(tmp_path / "torch_pgd_at.py") in message and "--only=scaling" in message


@pytest.mark.parametrize("argv, says", [
    (["--batches=1,0"], "--batches must be comma-separated positive integers (e.g. 1,128), "
                        "got '1,0'"),
    (["--batches", "1;128"], "got '1;128'"),
    (["--rounds=0"], "flag --rounds=0: 0 is not a positive integer"),
    (["--sparsity=1.5"], "flag --sparsity=1.5"),
    (["--train-rounds=-1"], "flag --train-rounds=-1"),
    (["--score=best"], "flag --score=best: value should be one of <layer_mean|global>"),
])
def test_serving(argv, says):
    assert says in _refused(serving, argv)


@pytest.mark.parametrize("argv, says", [
    (["--repeats=-3"], "flag --repeats=-3: -3 is not a positive integer"),
    (["--repeats", "0", "--side=tf"], "flag --repeats=0"),
    (["--side=jax"], "flag --side=jax: value should be one of <both|tf|torch>"),
    (["--width=0"], "flag --width=0"),
])
def test_conv_ops(argv, says):
    assert says in _refused(conv_ops, argv)


@pytest.mark.parametrize("argv, says", [
    (["--replicas=0"], "flag --replicas=0"),
    (["--precision=fp8"], "flag --precision=fp8"),
    (["--steps=-1"], "flag --steps=-1"),
    (["--eval=pgd20", "--save=NO/x.npz"], "--save=NO/x.npz: its folder does not exist"),
])
def test_ours_step(argv, says, tmp_path):
    argv = [a.replace("NO", str(tmp_path / "missing")) for a in argv]
    says = says.replace("NO", str(tmp_path / "missing"))
    assert says in _refused(ours_step, argv)


def test_device_bench(monkeypatch, tmp_path):
    missing = tmp_path / "bin" / "python"
    assert (f"--torch-python={missing} is not an executable file"
            in _refused(device_bench, [f"--torch-python={missing}"]))
    assert "flag --device=tpu" in _refused(device_bench, ["--device=tpu"])
    monkeypatch.setattr(pgd_at, "TORCH_SCRIPT", str(tmp_path / "torch_pgd_at.py"))
    assert str(tmp_path / "torch_pgd_at.py") in _refused(device_bench, ["--device=cpu"])
    monkeypatch.undo()
    script = tmp_path / "present.py"   # the reference present, wherever the checkout sits
    script.write_text("")
    monkeypatch.setattr(pgd_at, "TORCH_SCRIPT", str(script))
    monkeypatch.setattr(device_bench, "gpu_name", lambda: None)  # a machine without a GPU
    monkeypatch.setattr(pgd_at, "ours", _heavy)
    assert ("--device=gpu but nvidia-smi finds no GPU"
            in _refused(device_bench, ["--device=gpu"]))


def test_official_agreement(tmp_path):
    missing = tmp_path / "missing"
    assert (f"--from_saved={missing}: no {missing}/runs.json"
            in _refused(official_agreement, [f"--from_saved={missing}"]))
    assert (f"--torch={missing}: no such folder"
            in _refused(official_agreement, [f"--tf={tmp_path}", f"--torch={missing}"]))
    assert "pass --tf and --torch" in _refused(official_agreement, [f"--tf={tmp_path}"])
    assert "flag --seeds=0" in _refused(official_agreement, ["--seeds=0", "--from_saved=x"])
    a_file = tmp_path / "table.md"
    a_file.write_text("kept\n")
    assert (f"--save={a_file} is a file" in
            _refused(official_agreement, [f"--from_saved={SAVED}", f"--save={a_file}"]))
    assert a_file.read_text() == "kept\n"  # nothing written over


def test_verbosity_0_raises_the_error_behind_the_line():
    with pytest.raises(ValueError, match="--repeats must be >= 0"):
        pgd_at.entry(["--repeats=-1", "-v", "0"])


# traced: the error comes after the flags are parsed, so --verbosity=0 is known and shows the
# traceback (a value absl's parser refuses has none of ours to show: the line is all).
@pytest.mark.parametrize("module, argv, says, traced", [
    ("pgd_at", ["--repeats=-1"], "--repeats must be >= 0", True),
    ("serving", ["--batches=0"], "--batches must be", True),
    ("conv_ops", ["--repeats", "-1"], "flag --repeats=-1", False),
    ("ours_step", ["--eval=pgd20", "--train-steps=3"], "belong to --eval autoattack", True),
    ("device_bench", ["--torch-python=/no/python"], "--torch-python=/no/python", True),
    ("official_agreement", ["--from_saved=/no/folder"], "--from_saved=/no/folder", True),
])
def test_the_command_prints_one_line_and_exits_1(module, argv, says, traced):
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{module}"] + argv, cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"benchmarks.{module}: "), proc.stderr
    assert says in lines[0]
    if not traced:
        return
    traced = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", "-v", "0"] + argv,
                            cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    assert traced.returncode == 1 and "Traceback" in traced.stderr
    assert says in traced.stderr
