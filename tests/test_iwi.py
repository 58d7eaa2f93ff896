"""Inverse weights inheritance: the dense net starts from the sparse net's values, else zeros."""
import json

import numpy as np
import pytest

from birds_tf import models
from birds_tf.sparsity import distributions
from birds_tf.sparsity import masks as masks_lib
from birds_tf.utils import records
from birds_tf.experiment import iwi
from birds_tf.experiment.train_eval import Config
from sparse_method_helpers import (FAST, TINY, assert_inherits, run, tiny_arch,  # noqa: F401
                                   tiny_preact, variables)


def _randomised(net, seed):
    rng = np.random.default_rng(seed)
    for v in net.weights:
        if "mask" not in v.path:
            v.assign((np.abs if "variance" in v.path else np.asarray)(
                rng.normal(size=tuple(v.shape))).astype(np.float32))
    return net


def test_dense_net_inherits_exactly_the_sparse_values_and_zeros_elsewhere():
    sparse = _randomised(tiny_preact(10, (8, 8, 1), (0.3,), (0.4,)), 0)
    distributions.init_sparse(sparse, 0.2, "uniform", seed=3)
    # A stored kernel value under a zero mask must not leak into the dense net.
    layer = masks_lib.masked_layers(sparse)[0]
    layer.kernel.assign(layer.kernel + 1.0)
    source = variables(sparse)
    masks = masks_lib.get_masks(sparse)
    dense = _randomised(tiny_preact(10, (8, 8, 1), (0.3,), (0.4,)), 1)
    out = iwi.inherit_inverse(sparse, dense)
    assert out is dense
    assert_inherits(dense, source, masks)          # kernels = value * mask, BN/bias identical
    for layer in masks_lib.masked_layers(dense):
        assert np.all(np.asarray(layer.mask) == 1)  # every weight free to grow back
        kernel = np.asarray(layer.kernel)
        np.testing.assert_array_equal(kernel == 0, masks[layer.name] == 0)
    assert masks_lib.global_density(sparse) == pytest.approx(0.2, abs=0.01)  # source untouched


def test_bad_iwi_settings_are_refused_before_training(tmp_path, tiny_arch):
    cases = [
        (dict(prune_sparsity=1.0), r"prune_sparsity must be in \(0, 1\), got 1.0"),
        (dict(prune_sparsity=0), r"prune_sparsity must be in \(0, 1\), got 0"),
        (dict(dense_epochs=0), "dense_epochs must be an integer >= 1, got 0"),
        (dict(finetune_epochs=10, finetune_milestones=(20,)), "finetune milestone 20 is outside"),
        (dict(finetune_lr=0.0), "finetune_lr must be > 0"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            iwi.InverseWeightsInheritance(Config(method="iwi"), **kwargs)
    with pytest.raises(ValueError, match="trains a dense model"):
        run(["beyond_paper/iwi_resnet18.gin", "quickstart/smoke.gin"],
            FAST + ["train_eval.sparsity = 0.8"], tmp_path / "w")
    assert not (tmp_path / "w" / "iwi_stage_a_metrics.csv").exists()


def test_iwi_config_runs_both_stages(tmp_path, tiny_arch, monkeypatch):
    captured = {}
    original = iwi.InverseWeightsInheritance.prepare

    def prepare(self, exp, state):
        net, model = original(self, exp, state)
        captured.update(net=variables(net), sparse=variables(self.sparse_net),
                        masks=masks_lib.get_masks(self.sparse_net),
                        dense_masks=masks_lib.get_masks(net))
        return net, model

    monkeypatch.setattr(iwi.InverseWeightsInheritance, "prepare", prepare)
    workdir = tmp_path / "iwi"
    results = run(["beyond_paper/iwi_resnet18.gin", "quickstart/smoke.gin"], FAST, workdir)
    on_disk = json.loads((workdir / "results.json").read_text())
    assert on_disk["method"] == "iwi" and on_disk["final_sparsity"] == 0.0
    assert on_disk["stage_a_sparsity"] == pytest.approx(0.8, abs=1e-3)
    for key in ("stage_a_test_ra", "stage_a_test_sa"):
        assert 0.0 <= on_disk[key] <= 100.0
    assert results["inherited_nonzero_fraction"] <= 0.2 + 1e-6
    stage_a = records.read_metrics_csv(str(workdir / "iwi_stage_a_metrics.csv"))
    assert [r["stage"] for r in stage_a] == ["dense", "finetune"]
    assert [r["epoch"] for r in records.read_metrics_csv(str(workdir / "metrics.csv"))] == [1, 2]
    # The main stage's starting point: the fine-tuned sparse net's values, zeros elsewhere.
    assert all(np.all(m == 1) for m in captured["dense_masks"].values())
    net = models.registry._BUILDERS[TINY](10, (8, 8, 1), (0.3,), (0.4,))
    for v in net.weights:
        value = captured["net"][v.path]
        if "mask" in v.path:
            continue
        layer = next((la for la in masks_lib.masked_layers(net) if la.kernel.path == v.path),
                     None)
        want = captured["sparse"][v.path]
        if layer is not None:
            want = want * captured["masks"][layer.name]
            assert np.count_nonzero(value[captured["masks"][layer.name] == 0]) == 0
        np.testing.assert_array_equal(value, want, err_msg=v.path)
    # Training FLOPs include the sparse fine-tuning stage at its masks' densities: (2K + 3)
    # forward-equivalents of 2 x MACs per image and epoch (smoke: K = 2, 1 epoch, 256 images).
    import birds_tf
    counted = birds_tf.flops.count(net)
    masks = captured["masks"]
    sparse_macs = sum(layer.macs_dense * float(masks[layer.name].mean()) if layer.name in masks
                      else layer.macs for layer in counted.layers)
    training = on_disk["flops"]["training"]
    assert training["finetune"] == pytest.approx((2 * 2 + 3) * 2 * sparse_macs * 256 * 1)
    assert on_disk["training_flops"] == pytest.approx(
        training["adversarial"] + training["stage1"] + training["finetune"])
    assert training["stage1"] == pytest.approx((2 * 2 + 3) * counted.flops_dense * 256 * 1)
