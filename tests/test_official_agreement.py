"""The side-by-side statistics (benchmarks/official_agreement.py): Welch's interval against
SciPy, the verdict rules against hand-made runs, and the readers of both sides' files."""
import json
import math
import os

import pytest
from scipy import stats

from benchmarks import official_agreement as oa


def test_welch_matches_scipy():
    a, b = [84.4, 68.9, 88.3, 81.1, 83.3, 80.6], [85.3, 86.7, 83.9, 83.6, 82.0, 81.5]
    w = oa.welch(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert w["p"] == pytest.approx(ref.pvalue, rel=1e-6)
    ci = ref.confidence_interval(0.95)
    assert (w["low"], w["high"]) == (pytest.approx(ci.low, rel=1e-6),
                                     pytest.approx(ci.high, rel=1e-6))
    # hand math for the degrees of freedom (Welch-Satterthwaite)
    va, vb = stats.tvar(a) / 6, stats.tvar(b) / 6
    assert w["df"] == pytest.approx((va + vb) ** 2 / (va ** 2 / 5 + vb ** 2 / 5))


def test_welch_refuses_a_single_value():
    with pytest.raises(ValueError, match="2 values a side, got 1 and 3"):
        oa.welch([1.0], [1.0, 2.0, 3.0])


def _run(ra_final, ra_best=85.0, sparsity=90.0, prune=12, grow=8):
    return {"ra_final": ra_final, "ra_best": ra_best, "sa_final": 98.0, "sparsity": sparsity,
            "prune_more": prune, "grow_more": grow, "small_layers": {"conv1": 1.0}}


def test_verdicts():
    tf = {s: _run(84.0 + s % 2) for s in range(1, 7)}
    torch = {s: _run(84.5 - s % 2) for s in range(1, 7)}
    text, ok = oa.report({"tf": tf, "torch": torch}, "random")
    assert ok, text
    # RA final 3 points apart with no spread: the interval excludes 0 and the bound fails
    far = {s: _run(87.5 + 0.1 * s) for s in range(1, 7)}
    text, ok = oa.report({"tf": far, "torch": torch}, "random")
    assert not ok and "| RA final |" in text and "DISAGREE (|diff| <= 2.5" in text
    # sparsity 1.5 points apart fails its 1-point bound
    sparse = {s: _run(84.0 + s % 2, sparsity=91.5 + 0.01 * s) for s in range(1, 7)}
    text, ok = oa.report({"tf": sparse, "torch": torch}, "random")
    assert not ok and "DISAGREE (|diff| <= 1)" in text


def test_readers(tmp_path):
    tf = tmp_path / "tf" / "fbp_s1"
    tf.mkdir(parents=True)
    events = [{"epoch": 16, "prune_more": True, "grow_more": False},
              {"epoch": 16, "prune_more": True, "grow_more": True},
              {"epoch": 18, "prune_more": False, "grow_more": True}]
    json.dump({"ra_final": 80.0, "ra_best": 82.0, "sa_final": 97.0, "final_sparsity": 0.9,
               "mask_update_events": events}, open(tf / "results.json", "w"))
    (tf / "metrics.csv").write_text("epoch,density/conv1,density/layer2_0_shortcut\n"
                                    "1,0.9,0.5\n2,1.0,0.25\n")
    r = oa.read_run(str(tf), "tf")
    assert (r["prune_more"], r["grow_more"]) == (1, 2)
    assert r["small_layers"] == {"conv1": 1.0, "layer2_0_shortcut": 0.25}
    assert r["sparsity"] == pytest.approx(90.0)
    log = tmp_path / "torch.log"
    log.write_text("conv1.weight_0: 71.0->71, density: 0.986\n"
                   "layer2.0.shortcut.0.weight_19: 125.0->125, density: 0.977\n"
                   "conv1.weight_0: 72.0->72, density: 1.000\n")
    assert oa._torch_layers(str(log)) == {"conv1": 1.0, "layer2_0_shortcut": 0.977}
    assert oa.read_run(str(tmp_path / "missing"), "tf") is None
    assert not math.isnan(r["ra_final"])


def test_committed_tables_regenerate():
    """docs/authors-code.md quotes results/side_by_side/*/table.md: each must be what the
    committed per-seed figures give."""
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results",
                        "side_by_side")
    folders = sorted(os.listdir(root))
    assert {"fb_plus_random", "fb_plus_gradient", "dense"} <= set(folders)
    for name in folders:
        with open(os.path.join(root, name, "runs.json")) as f:
            saved = json.load(f)
        runs = {side: {int(s): v for s, v in saved["runs"][side].items()} for side in saved["runs"]}
        text, ok = oa.report(runs, saved["label"], saved["method"])
        with open(os.path.join(root, name, "table.md")) as f:
            assert f.read() == text + "\n", name
        assert ok == (name != "fb_plus_random_seeds1-6"), name
