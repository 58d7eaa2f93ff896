"""TensorFlow's oneDNN kernels on every x86 CPU: its default turns them on only with AVX-512
VNNI or newer, and an AVX2-only CPU's PGD-AT step then ran 3.3x slower (birds_tf/utils/machine.py)."""
import os
import subprocess
import sys

import pytest

from birds_tf.utils import machine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# TensorFlow's own answer (a private module: tests may use it, the package does not).
PROBE = ("import birds_tf, tensorflow; "
         "from tensorflow.python.util import _pywrap_util_port as p; print(p.IsMklEnabled())")


def _probe(**env):
    full = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    full.update(env, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         env=full, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.skipif(machine.platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="oneDNN is asked for on x86 only")
def test_import_birds_tf_turns_onednn_on_and_a_users_zero_keeps_it_off():
    assert _probe() == "True"
    assert _probe(TF_ENABLE_ONEDNN_OPTS="0") == "False"


def test_enable_onednn_sets_only_an_unset_variable_on_x86_before_tensorflow(monkeypatch):
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    assert machine.enable_onednn() is False           # the tests imported TensorFlow already
    assert "TF_ENABLE_ONEDNN_OPTS" not in os.environ  # so nothing is set that it never read
    monkeypatch.delitem(sys.modules, "tensorflow")
    monkeypatch.setattr(machine.platform, "machine", lambda: "aarch64")
    machine.enable_onednn()
    assert "TF_ENABLE_ONEDNN_OPTS" not in os.environ
    monkeypatch.setattr(machine.platform, "machine", lambda: "x86_64")
    assert machine.enable_onednn() is True
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    machine.enable_onednn()
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"


def test_run_record_keeps_what_tensorflow_read(monkeypatch):
    from launch import reproduce
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
    assert reproduce.run_record(1.0)["tf_enable_onednn_opts"] == "1"
