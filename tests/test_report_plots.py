"""launch.report and launch.plot on demo-size workdirs (dense PGD-AT and Flying Bird+), the
FLOPs fields of results.json, and the figure helpers' invariants."""
import csv
import json

import matplotlib.image as mpimg
import numpy as np
import pytest

from birds_tf import plots
from birds_tf.experiment.train_eval import Config
from birds_tf.utils import workdir as wd
from launch import plot, report
from tests import demo_workdirs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return demo_workdirs.make(tmp_path_factory)


def test_results_json_holds_flops(runs):
    dense, fbp = (wd.results(runs[name]) for name in ("dense", "fb_plus"))
    for res in (dense, fbp):
        for key in ("inference_flops", "training_flops", "training_flops_paper_convention"):
            assert res[key] > 0, key
    flops = dense["flops"]
    n, k, epochs = flops["num_train"], flops["pgd_steps"], dense["epochs"]
    assert (n, k) == (96, 1)
    assert dense["training_flops_paper_convention"] == pytest.approx(
        3 * (k + 1) * dense["inference_flops"] * n * epochs)
    assert dense["training_flops"] == pytest.approx((2 * k + 3) * dense["inference_flops"] *
                                                    n * epochs)
    assert fbp["inference_flops"] < 0.8 * fbp["inference_flops_dense"]
    assert fbp["flops"]["training"]["mask_updates"] > 0      # gradient growth's dense backward
    assert [e for e, _ in wd.Workdir(runs["fb_plus"]).mask_files()] == [0, 1, 2, 3]
    assert wd.Workdir(runs["dense"]).mask_files() == []


def test_report_prints_writes_markdown_and_csv(runs, tmp_path, capsys):
    out = tmp_path / "report"
    report.main([str(runs["fb_plus"]), str(runs["dense"]), f"--out_dir={out}"])
    printed = capsys.readouterr().out
    assert "| Sparsity (%) | Method | RA best" in printed and "Training FLOPs (x1e" in printed
    assert (out / "table.md").read_text().strip() == printed.strip()
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert [r["method"] for r in rows] == ["dense", "fb_plus"]    # the dense row first
    dense, fbp = (wd.results(runs[name]) for name in ("dense", "fb_plus"))
    assert float(rows[1]["rgg_reduction"]) == pytest.approx(dense["rgg_final"] -
                                                            fbp["rgg_final"])
    assert float(rows[1]["training_flops"]) == pytest.approx(fbp["training_flops"])
    assert rows[0]["rgg_reduction"] == ""
    line = [ln for ln in printed.splitlines() if "Flying Bird+" in ln][0]
    assert line.startswith("| 80 | Flying Bird+ | ")


def test_report_names_a_bad_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(SystemExit, match=f"{missing}.*no such directory"):
        report.main([str(missing)])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit, match=f"{empty}.*no results.json"):
        report.main([str(empty)])


def _check_png(path):
    image = mpimg.imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 200, (path, image.shape)
    flat = image.reshape(-1, image.shape[-1])
    assert len(np.unique(flat[:: max(1, len(flat) // 20000)], axis=0)) > 10, path


def test_plot_writes_every_figure(runs, tmp_path, capsys):
    out = tmp_path / "figs"
    args = ["--kind=all", f"--workdir={runs['dense']}", f"--workdir={runs['fb_plus']}",
            f"--out={out}", "--grid=3", "--batches=1", "--images=2"]
    plot.main(args)
    printed = capsys.readouterr().out
    assert "skipped mask_similarity" in printed          # dense runs keep no per-epoch masks
    expected = ["accuracy.png", "layer_density.png", "gradcam.png", "saliency.png",
                "dense/density.png", "fb_plus/density.png", "fb_plus/mask_similarity.png",
                "dense/landscape.png", "fb_plus/landscape.png"]
    for name in expected:
        assert str(out / name) in printed
        _check_png(out / name)
    for name in ("dense", "fb_plus"):
        assert any((runs[name] / "tensorboard" / "figures").glob("events.out.tfevents*"))
    with pytest.raises(SystemExit, match="fewer than two per-epoch masks"):
        plot.main(["--kind=mask_similarity", f"--workdir={runs['dense']}", f"--out={out}"])
    with pytest.raises(SystemExit, match="no such directory"):
        plot.main(["--kind=accuracy", f"--workdir={tmp_path / 'missing'}"])


def test_mask_similarity_is_one_minus_normalized_hamming():
    a = {"x": np.array([1, 0, 1, 0]), "y": np.ones((2, 2))}
    b = {"x": np.array([0, 1, 1, 0]), "y": np.ones((2, 2))}
    sim = plots.mask_similarity([a, b, a])
    np.testing.assert_allclose(sim, [[1, 0.75, 1], [0.75, 1, 0.75], [1, 0.75, 1]])


def test_landscape_directions_and_center(runs):
    net = wd.load_model(runs["fb_plus"])
    direction = plots.filter_normalized_direction(net, np.random.default_rng(0))
    layer = net.get_layer("layer2_0_conv1")
    mask = np.asarray(layer.mask.numpy())
    d = direction[layer.name]
    assert np.all(d[mask == 0] == 0)
    w = np.asarray(layer.kernel.numpy()) * mask
    np.testing.assert_allclose(np.linalg.norm(d.reshape(-1, d.shape[-1]), axis=0),
                               np.linalg.norm(w.reshape(-1, w.shape[-1]), axis=0), rtol=1e-4)
    x = np.random.default_rng(0).random((4, 8, 8, 1), np.float32)
    y = np.arange(4)
    before = [np.asarray(v.numpy()) for v in net.weights]
    coords, losses = plots.loss_surface(net, [(x, y)], grid=3, robust=False)
    logits = np.asarray(net(x, training=False))
    logp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) \
        - logits.max(1, keepdims=True)
    assert coords[1] == 0 and losses[1, 1] == pytest.approx(-logp[np.arange(4), y].mean(),
                                                            rel=1e-4)
    for v, b in zip(net.weights, before):
        np.testing.assert_array_equal(np.asarray(v.numpy()), b)


def test_gradcam_and_saliency_maps_are_normalized(runs):
    net = wd.load_model(runs["fb_plus"])
    x = np.random.default_rng(1).random((3, 8, 8, 1), np.float32)
    for maps in (plots.grad_cam(net, x), plots.saliency(net, x),
                 plots.saliency(net, x, smooth_samples=2)):
        assert maps.shape == (3, 8, 8)
        assert maps.min() >= 0 and maps.max() <= 1 + 1e-6
    assert plots.attention.feature_layer(net).name == "layer4_1_add"
    with pytest.raises(ValueError, match="at least 2"):
        plots.grad_cam(net, x[:1])
    json.dumps(Config.from_workdir(runs["fb_plus"]).__dict__)   # the parsed config is plain data


def test_report_starts_without_tensorflow_and_fast(runs):
    import os
    import subprocess
    import sys
    import time
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import sys\nfrom launch import report\n"
            f"report.main([{str(runs['dense'])!r}, {str(runs['fb_plus'])!r}])\n"
            "heavy = [m for m in ('tensorflow', 'keras', 'gin') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    start = time.time()
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                          text=True, timeout=120)
    seconds = time.time() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| Sparsity (%) | Method |" in proc.stdout
    assert seconds < 5, seconds       # 14 s when it imported TensorFlow; ~0.2 s on a 2-core Xeon
