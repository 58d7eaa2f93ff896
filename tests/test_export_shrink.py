"""launch.export --shrink / --format=litert on a trained fb_plus_channel workdir: a narrower
SavedModel that a fresh process reloads with the masked model's logits; bad input refused."""
import json
import shutil

import numpy as np
import pytest

from birds_tf.export.litert import run_litert
from birds_tf.utils import workdir as wd
from launch import export
from tests import demo_workdirs
from tests.test_export import reload_in_fresh_process


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    # Shared with test_export.py / test_report_plots.py (fb_plus) in a full run: one new training.
    return demo_workdirs.make(tmp_path_factory, ("fb_plus", "fb_plus_channel"))


def test_shrunk_export_reloads_in_a_fresh_process_with_equal_logits(runs, tmp_path, capsys):
    workdir = runs["fb_plus_channel"]
    res = json.loads((workdir / "results.json").read_text())
    assert res["channels_removed"] == round(0.5 * res["channels_removable"])
    out = tmp_path / "saved"
    export.main([f"--workdir={workdir}", f"--out={out}", "--shrink", "--format=litert"])
    printed = capsys.readouterr().out
    assert "shrunk:" in printed and "LiteRT model.tflite" in printed
    meta = json.loads((out / "metadata.json").read_text())
    ch = meta["shrink"]["channels"]
    assert sum(v["before"] - v["after"] for v in ch.values()) == res["channels_removed"]
    assert meta["shrink"]["parameters_after"] < meta["shrink"]["parameters_before"]
    assert meta["inference_flops"] < meta["inference_flops_dense"]
    sizes = meta["sizes_bytes"]
    assert sizes["model_sparse.tflite"] < sizes["model.tflite"]

    x = np.random.default_rng(0).random((5, 8, 8, 1), np.float32)
    reload_in_fresh_process(out, x, tmp_path)
    masked = np.asarray(wd.load_model(workdir, "final")(x, training=False))
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), masked, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(run_litert(out / "model.tflite", x), masked, atol=1e-4)
    with np.load(tmp_path / "vars.npz") as saved:
        name = next(n for n in saved.files if n.startswith("layer1_0_conv1/kernel"))
        assert saved[name].shape[-1] == ch["layer1_0_conv1"]["after"]


def test_shrink_refuses_dense_runs_and_runs_without_dead_channels(runs, tmp_path):
    with pytest.raises(SystemExit, match="no removable channel"):
        export.main([f"--workdir={runs['fb_plus']}", f"--out={tmp_path / 'x'}", "--shrink"])
    # A dense run is refused from its results.json (target sparsity 0) before any model work:
    # a copy of the fb_plus workdir whose record says so (a dense model itself is refused by
    # shrink() as well: test_channel.py).
    dense = tmp_path / "dense"
    shutil.copytree(runs["fb_plus"], dense)
    res = json.loads((dense / "results.json").read_text())
    res.update(method="dense", target_sparsity=0.0)
    (dense / "results.json").write_text(json.dumps(res))
    with pytest.raises(SystemExit, match="dense model"):
        export.main([f"--workdir={dense}", f"--out={tmp_path / 'y'}", "--shrink"])
