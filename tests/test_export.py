"""launch.export: masks folded into a SavedModel that a fresh process reloads with
tf.saved_model.load and that gives the trained model's logits, with the mask's zeros."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from birds_tf.export import load_sparse_weights
from birds_tf.sparsity import masks as masks_lib
from birds_tf.utils import workdir as wd
from launch import export
from tests import demo_workdirs

RELOAD = r"""
import sys
import numpy as np
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
x = np.load(sys.argv[2])
np.save(sys.argv[3], model.serve(tf.constant(x)).numpy())
np.savez(sys.argv[4], **{v.name.split(":")[0]: v.numpy() for v in model.variables})
print(sorted(model.signatures))
"""


def reload_in_fresh_process(out, x, tmp_path):
    """Loads the SavedModel ``out`` in a new Python process and runs ``serve`` on ``x``; its
    logits land in ``tmp_path/logits.npy`` and its variables in ``tmp_path/vars.npz``."""
    np.save(tmp_path / "x.npy", x)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", RELOAD, str(out), str(tmp_path / "x.npy"),
                           str(tmp_path / "logits.npy"), str(tmp_path / "vars.npz")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "'serve'" in done.stdout


@pytest.fixture(scope="module")
def fb_plus(tmp_path_factory):
    return demo_workdirs.make(tmp_path_factory, ("fb_plus",))["fb_plus"]


def test_export_reloads_in_a_fresh_process_with_the_same_logits(fb_plus, tmp_path, capsys):
    out = tmp_path / "saved"
    export.main([f"--workdir={fb_plus}", f"--out={out}", "--which=final"])
    printed = capsys.readouterr().out
    assert "sparse compressed" in printed and "dense float32" in printed
    x = np.random.default_rng(0).random((5, 8, 8, 1), np.float32)
    reload_in_fresh_process(out, x, tmp_path)

    net = wd.load_model(fb_plus, "final")
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"),
                               np.asarray(net(x, training=False)), atol=1e-5, rtol=1e-5)
    masks = masks_lib.get_masks(net)
    with np.load(tmp_path / "vars.npz") as saved:
        kernels = {name.split("/")[0]: saved[name] for name in saved.files
                   if name.endswith("/kernel")}
    assert set(kernels) == set(masks)
    for name, mask in masks.items():
        np.testing.assert_array_equal(kernels[name] != 0, mask > 0, err_msg=name)
    assert not any("mask" in name for name in kernels)

    meta = json.loads((out / "metadata.json").read_text())
    res = wd.results(fb_plus)
    assert meta["signature"] == "serve" and meta["input"]["range"] == [0.0, 1.0]
    assert meta["ra"] == res["ra_final"] and meta["sa"] == res["sa_final"]
    assert meta["inference_flops"] == pytest.approx(res["inference_flops"])
    assert meta["density"] == pytest.approx(masks_lib.global_density(net))
    assert meta["layers"]["conv1"]["density"] == pytest.approx(float(masks["conv1"].mean()))
    assert "train_eval.method = 'fb_plus'" in meta["config"]["operative_config.gin"]
    sizes = meta["sizes_bytes"]
    assert 0 < sizes["sparse_zip"] < sizes["dense_float32"]
    for name, kernel in load_sparse_weights(out / "sparse_weights.npz").items():
        layer = net.get_layer(name)
        np.testing.assert_array_equal(kernel, np.asarray(layer.effective_kernel()))


def test_export_refuses_bad_input(fb_plus, tmp_path):
    missing = tmp_path / "no_run"
    with pytest.raises(SystemExit, match=f"{missing}.*no such directory"):
        export.main([f"--workdir={missing}", f"--out={tmp_path / 'a'}"])
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "file").write_text("x")
    with pytest.raises(SystemExit, match="not empty"):
        export.main([f"--workdir={fb_plus}", f"--out={busy}"])
