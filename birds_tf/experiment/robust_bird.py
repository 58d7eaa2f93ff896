"""Robust Bird (paper Algorithm 1; the authors' code at 6e9a862, ``Robust-Bird/train_eb.py``).

Stage 1 trains the dense network cheaply (clean SGD by default; ``'pgd'`` or ``'fast'`` for the
Table A6 ablation). After every stage-1 epoch the early-bird detector takes a global magnitude
mask over all conv kernels at the target sparsity (rule ``thre = sorted(|w|)[int(N*s)]``,
``mask = |w| > thre``; the fc layer is excluded, as in the code). The normalised Hamming distance
to the previous epoch's mask, ``d(m_t, m_{t-1})``, is appended to a FIFO of ``queue_length``
distances (Algorithm 1, line 4); once it is full they are compared with ``tau`` and the ticket is
drawn at the first epoch where all of them are below it. The ticket itself is a global L1 mask
over conv AND fc kernels (torch's ``global_unstructured``), then the weights are rewound
(``rewind='init'``: to the initial theta_0, BN included, as Algorithm 1; ``rewind='none'``: the
stage-1 weights, as the released code) and stage 2 is the protocol's PGD-AT run with a fresh
optimizer and schedule.

Paper vs code (docs/authors-code.md, "Robust Bird"), both available:

=====================  =============================  =====================================
item                   paper (defaults here)          released code (rb_*_official_code.gin)
=====================  =============================  =====================================
threshold ``tau``      0.1, ``max(Q) < tau``          0.08, ``dist > 0.08 -> no`` (i.e. <=)
distances in ``Q``     consecutive d(m_t, m_{t-1})    newest mask vs each of 4 older ones
rewinding              theta_0 (Algorithm 1 line 8)   none (stage-1 weights at the EB epoch)
stage-1 milestones     50/150 (Appendix A2.2)         50/150
stage-2 milestones     100/150 (the baseline recipe)  50/150
=====================  =============================  =====================================

``distance_mode='consecutive'`` (default) is Algorithm 1: ``Q`` holds the last ``queue_length``
distances between consecutive masks (the first decision after ``queue_length + 1`` epochs).
``'newest'`` is the code's ``EarlyBird.cal_dist``: the newest of the last ``queue_length`` masks
against each of the older ones.

If no ticket emerges within ``stage1_epochs``, the last epoch's weights give the ticket and
``results.json`` says ``ticket_found: false``.
"""
import logging

import gin

from birds_tf.experiment import method, stages
from birds_tf.sparsity import magnitude
from birds_tf.sparsity import masks as masks_lib
from birds_tf.sparsity.early_bird import COMPARISONS, EarlyBirdDetector, MaskQueue
from birds_tf.training import resume
from birds_tf.utils import checks
from birds_tf.utils.workdir import Workdir

REWINDS = ("init", "none")


@gin.configurable
class RobustBird(method.Method):
    """``method='rb'``: early-bird ticket from cheap training, then PGD-AT (Algorithm 1)."""

    sparse = True
    info_file = Workdir.STAGE1_JSON

    def __init__(self, config, stage1="sgd", stage1_epochs=200, stage1_milestones=(50, 150),
                 stage1_lr=None, fast_peak_lr=0.2, tau=0.1, comparison="<", queue_length=5,
                 distance_mode="consecutive", rewind="init"):
        super().__init__(config)
        checks.target_sparsity(config)
        self.stage1 = stages.check_mode(stage1, "stage1")
        self.stage1_epochs = checks.integer("stage1_epochs", stage1_epochs)
        if stage1_lr is not None and not stage1_lr > 0:
            raise ValueError(f"stage1_lr must be > 0, got {stage1_lr!r}.")
        self.stage1_lr = stage1_lr
        if not fast_peak_lr > 0:
            raise ValueError(f"fast_peak_lr must be > 0, got {fast_peak_lr!r}.")
        self.fast_peak_lr = float(fast_peak_lr)
        try:
            ok = 0.0 < float(tau) <= 1.0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"tau (the mask-distance threshold) must be in (0, 1], got "
                             f"{tau!r}.")
        self.tau = float(tau)
        if comparison not in COMPARISONS:
            raise ValueError(f"Unknown comparison {comparison!r}; allowed: {COMPARISONS} "
                             "('<' paper, '<=' released code).")
        self.comparison = comparison
        queue = MaskQueue(queue_length, distance_mode)  # validates both
        self.queue_length, self.distance_mode = queue.length, queue.mode
        if self.stage1_epochs < queue.masks_needed:
            raise ValueError(f"stage1_epochs ({stage1_epochs!r}) is smaller than the "
                             f"{queue.masks_needed} epochs the early-bird queue needs "
                             f"(queue_length={queue_length!r}, distance_mode={distance_mode!r}); "
                             "no ticket could ever emerge.")
        self.stage1_milestones = checks.milestones("stage1", stage1_milestones,
                                                         self.stage1_epochs, "stage1_epochs")
        if rewind not in REWINDS:
            raise ValueError(f"Unknown rewind {rewind!r}; allowed: {REWINDS} ('init' paper, "
                             "'none' released code).")
        self.rewind = rewind
        self.theta0 = None
        self.stage1_weights = None

    def prepare(self, exp, state):
        density = 1.0 - self.config.sparsity
        if resume.in_main_stage(state):
            # Masks, weights and optimizer come back from the main stage's checkpoint.
            self.load_info(exp)
            net = exp.build_net()
            return net, exp.make_trainer(net)
        net = exp.build_net()
        self.theta0 = stages.snapshot(net)
        trainer = stages.make_stage_trainer(exp, net, self.stage1, self.stage1_epochs,
                                            self.stage1_milestones, self.stage1_lr,
                                            self.fast_peak_lr)
        detector = EarlyBirdDetector(net, density, self.tau, self.queue_length, self.comparison,
                                     self.distance_mode)
        rows = stages.run_pre_stage(exp, trainer, self.stage1_epochs, "stage1",
                                    "stage1", [detector])
        found = detector.ticket_epoch is not None
        if not found:
            logging.warning("Robust Bird: no ticket emerged within %d stage-1 epochs (tau %s); "
                            "using the mask of the last epoch.", len(rows), self.tau)
        ticket = magnitude.global_magnitude_masks(net, density, layer_filter="all",
                                                  rule="l1_unstructured")
        self.stage1_weights = stages.snapshot(net)
        fresh = exp.build_net()
        fresh.set_weights(self.theta0 if self.rewind == "init" else self.stage1_weights)
        masks_lib.set_masks(fresh, ticket)
        self.save_info(exp, {
            "ticket_found": found,
            "ticket_epoch": detector.ticket_epoch if found else len(rows),
            "stage1_epochs_run": len(rows),
            "stage1_epochs_budget": self.stage1_epochs,
            "stage1_pgd_steps": stages.attack_steps(self.stage1, self.config),
            "mask_distance_history": detector.history,
            "stage1": self.stage1, "tau": self.tau, "comparison": self.comparison,
            "queue_length": self.queue_length, "distance_mode": self.distance_mode,
            "rewind": self.rewind,
            "ticket_density": masks_lib.global_density(fresh),
            "stage1_final_val_sa": rows[-1]["val_sa"] if rows else None,
        })
        return fresh, exp.make_trainer(fresh)

    def settings(self, exp=None):
        """Stage 1 and the early-bird detector as used: ``stage1_lr`` ``None`` is the run's lr;
        a ``'fast'`` stage 1 follows a one-cycle schedule to ``fast_peak_lr`` instead of the
        milestones."""
        out = {"stage1": self.stage1, "stage1_epochs": self.stage1_epochs, "tau": self.tau,
               "comparison": self.comparison, "queue_length": self.queue_length,
               "distance_mode": self.distance_mode, "rewind": self.rewind}
        if self.stage1 == "fast":
            out["fast_peak_lr"] = self.fast_peak_lr
        else:
            out["stage1_lr"] = float(self.stage1_lr if self.stage1_lr is not None
                                     else self.config.lr)
            out["stage1_milestones"] = list(self.stage1_milestones)
        return out

    def costs(self, exp, model):
        return method.pre_stage_costs(self.load_info(exp))
