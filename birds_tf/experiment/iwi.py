"""Inverse weights inheritance (Wang et al., "Achieving Adversarial Robustness via Sparsity").

No public code exists (docs/authors-code.md, "Inverse weights inheritance"); this is the
reconstruction from the abstract, with every open detail a gin parameter:

* stage A (pre-stage, ``iwi_stage_a_metrics.csv``): adversarially train a dense network for
  ``dense_epochs`` (PGD-AT with the run's attack, ``dense_milestones``); prune it by global
  magnitude over conv + fc kernels to ``prune_sparsity`` with weights inheritance (the surviving
  weights keep their trained values -- no re-initialisation, no rewind); adversarially fine-tune
  the sparse network for ``finetune_epochs`` at ``finetune_lr`` (``finetune_milestones``);
* stage B (the main stage, reported by the protocol): a dense network of the same architecture
  inherits the sparse network's weights -- kept positions copy its values, pruned positions start
  at exactly zero, BN parameters and statistics are copied, masks are all ones so every weight
  is free to grow back -- and is adversarially trained with the run's recipe.

``results.json`` records the stage-A sparse network's test SA and PGD RA (the run's evaluation
attack) as ``stage_a_test_sa`` / ``stage_a_test_ra``. The main network is dense: the method
takes no ``train_eval.sparsity`` (the prune ratio is ``prune_sparsity``). Stage A is not
checkpointed; a crash during it restarts it on resume.
"""

import gin
import numpy as np

from birds_tf.sparsity import magnitude
from birds_tf.sparsity import masks as masks_lib
from birds_tf.experiment import method, stages
from birds_tf.metrics.flop_count import MethodCosts, SparseFineTune
from birds_tf.training import epoch_eval, resume
from birds_tf.utils import checks
from birds_tf.utils.workdir import Workdir


@gin.configurable
class InverseWeightsInheritance(method.Method):
    """``method='iwi'``."""

    info_file = Workdir.IWI_STAGE_A_JSON
    sparse = False

    def __init__(self, config, prune_sparsity=0.8, dense_epochs=200,
                 dense_milestones=(100, 150), finetune_epochs=100, finetune_lr=0.01,
                 finetune_milestones=(50,)):
        super().__init__(config)
        try:
            ok = 0.0 < float(prune_sparsity) < 1.0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"prune_sparsity must be in (0, 1), got {prune_sparsity!r}.")
        self.prune_sparsity = float(prune_sparsity)
        self.dense_epochs = checks.integer("dense_epochs", dense_epochs)
        self.dense_milestones = checks.milestones("dense", dense_milestones,
                                                        self.dense_epochs, "dense_epochs")
        self.finetune_epochs = checks.integer("finetune_epochs", finetune_epochs)
        self.finetune_milestones = checks.milestones(
            "finetune", finetune_milestones, self.finetune_epochs, "finetune_epochs")
        if not finetune_lr > 0:
            raise ValueError(f"finetune_lr must be > 0, got {finetune_lr!r}.")
        self.finetune_lr = float(finetune_lr)
        self.sparse_net = None

    def prepare(self, exp, state):
        if resume.in_main_stage(state):
            self.load_info(exp)
            net = exp.build_net()
            return net, exp.make_trainer(net)
        dense = exp.build_net()
        log = stages.PreStageLog(exp.files.stage_metrics_csv("iwi_stage_a"), exp.splits, "dense",
                                 exp.strategy, seed=self.config.seed)
        trainer = stages.make_stage_trainer(exp, dense, "pgd", self.dense_epochs,
                                            self.dense_milestones)
        stages.run_pre_stage(exp, trainer, self.dense_epochs, None, "dense", log=log)
        masks_lib.set_masks(dense, magnitude.global_magnitude_masks(
            dense, 1.0 - self.prune_sparsity, layer_filter="all", rule="l1_unstructured"))
        trainer = stages.make_stage_trainer(exp, dense, "pgd", self.finetune_epochs,
                                            self.finetune_milestones, self.finetune_lr)
        stages.run_pre_stage(exp, trainer, self.finetune_epochs, None, "finetune", log=log)
        self.sparse_net = dense
        test = epoch_eval.SplitEvaluator(dense, self.config.eval_attack(), exp.strategy,
                                         self.config.seed)(exp.splits.test)
        net = inherit_inverse(dense, exp.build_net())
        self.save_info(exp, {"prune_sparsity": self.prune_sparsity,
                     "stage_a_sparsity": 1.0 - masks_lib.global_density(dense),
                     "stage_a_test_sa": test["sa"], "stage_a_test_ra": test["ra"],
                     "dense_epochs": self.dense_epochs, "finetune_epochs": self.finetune_epochs,
                     # the dense pre-training and the sparse fine-tuning, for the FLOPs
                     "stage1_epochs_run": self.dense_epochs,
                     "stage1_pgd_steps": int(self.config.train_steps),
                     "finetune_epochs_run": self.finetune_epochs,
                     "finetune_pgd_steps": int(self.config.train_steps),
                     "finetune_densities": {layer.name: float(np.mean(layer.mask.numpy()))
                                            for layer in masks_lib.masked_layers(dense)},
                     "finetune_lr": self.finetune_lr,
                     "inherited_nonzero_fraction": _nonzero_fraction(net)})
        return net, exp.make_trainer(net)

    def settings(self, exp=None):
        return {"prune_sparsity": self.prune_sparsity, "dense_epochs": self.dense_epochs,
                "dense_milestones": list(self.dense_milestones),
                "finetune_epochs": self.finetune_epochs, "finetune_lr": self.finetune_lr,
                "finetune_milestones": list(self.finetune_milestones)}

    def costs(self, exp, model):
        info = self.load_info(exp)
        if not info:
            return MethodCosts()
        return MethodCosts(method.pre_stage_costs(info).pre_stage,
                           SparseFineTune(info["finetune_epochs_run"],
                                          info["finetune_pgd_steps"],
                                          info["finetune_densities"]))


def inherit_inverse(sparse_net, dense_net):
    """``dense_net`` takes every value of ``sparse_net`` (kernels as ``kernel * mask``, so exact
    zeros off the mask; biases and BN copied) and keeps all-ones masks. Returns ``dense_net``."""
    stages.copy_weights(sparse_net, dense_net)
    for layer in masks_lib.masked_layers(dense_net):
        layer.kernel.assign(layer.kernel * layer.mask)
        layer.mask.assign(layer.mask * 0 + 1)
    return dense_net


def _nonzero_fraction(net):
    nz = total = 0
    for layer in masks_lib.masked_layers(net):
        k = np.asarray(layer.kernel.numpy())
        nz += int(np.count_nonzero(k))
        total += k.size
    return nz / total
