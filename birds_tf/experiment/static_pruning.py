"""The static-sparsity baselines of Table 1 (and GMP), as ``train_eval`` methods.

All of them train the same masked architecture with the same PGD-AT main stage; they differ only
in how the mask is chosen:

* ``random`` -- random pruning: every masked layer (stem and fc included) at the target density,
  exactly ``int(s * n)`` random zeros per layer (the reference's ``uniform`` budget with the
  exact count of its IGQ init; its own ``uniform`` init is Bernoulli, ``Masking.init``);
* ``igq`` / ``erk`` -- random masks under the IGQ / ERK layer-wise budget
  (``sparselearning/igq.py``, ``Masking.init``), kept fixed (Flying Bird's init without the
  dynamic updates);
* ``snip`` / ``grasp`` / ``synflow`` -- pruning at initialisation with Synaptic-Flow's
  ``prune_loop`` (docs/authors-code.md, "Layer-wise budgets and pruning at init"): global scope,
  ``10 * num_classes`` training samples at batch 256 for SNIP/GraSP (GraSP with temperature 200),
  SynFlow iterated 100 rounds with the exponential schedule ``D**((r+1)/R)`` on an all-ones input;
  ``prune_at_init`` takes any scorer by name;
* ``omp`` -- one-shot magnitude pruning (``Robust-Bird/train_base.py``; docs/authors-code.md,
  "Robust Bird"): dense training for ``pretrain_epochs`` (PGD-AT by default), then a global L1 mask
  over conv + fc kernels, then the main PGD-AT stage from the trained weights (no rewind; fresh
  optimizer);
* ``small_dense`` -- no mask: the narrowed PreActResNet-18 with about ``1 - s`` of the weights,
  trained densely; ``results.json`` reports its parameter-equivalent sparsity;
* ``gmp`` -- gradual magnitude pruning during PGD-AT with tfmot's ``PolynomialDecay`` (power 3)
  or ``ConstantSparsity`` schedule (``birds_tf.pruning.gradual``); not a row of the paper.

Masks are chosen once, before the main stage; on resume (``state.stage == 'main'``) the net is
rebuilt with all-ones masks and the checkpoint restores the chosen ones, so nothing is recomputed.
What the results need from the pruning step is kept in ``pruning.json`` in the workdir.
"""

import gin
import numpy as np

from birds_tf import models as models_lib
from birds_tf.models import small_dense as small_dense_lib
from birds_tf.pruning import gradual
from birds_tf.sparsity import distributions, magnitude, scorers
from birds_tf.sparsity import masks as masks_lib
from birds_tf.experiment import method, stages
from birds_tf.training import resume
from birds_tf.utils import checks
from birds_tf.utils.workdir import Workdir


class StaticMask(method.Method):
    """Base: choose the mask once in ``make_masks``, then train it with the plain PGD-AT stage."""

    sparse = True
    info_file = Workdir.PRUNING_JSON

    def __init__(self, config):
        super().__init__(config)
        checks.target_sparsity(config)

    @property
    def density(self):
        return 1.0 - self.config.sparsity

    def prepare(self, exp, state):
        if resume.in_main_stage(state):
            self.load_info(exp)
            net = self.build(exp)
            return net, exp.make_trainer(net)
        net = self.make_masks(exp)
        info = {"mask_method": self.name}
        info.update(self.describe(exp, net))
        try:
            info["layer_densities_initial"] = masks_lib.densities(net)
            info["density_initial"] = masks_lib.global_density(net)
        except ValueError:
            pass
        self.save_info(exp, info)
        return net, exp.make_trainer(net)

    def build(self, exp):
        return exp.build_net()

    def make_masks(self, exp):
        """Build the net and set its masks (pruned kernel entries zeroed); returns the net."""
        raise NotImplementedError

    def describe(self, exp, net):
        return {}



# ---------------------------------------------------------------------------------------------
# random masks: uniform (Random Pruning), IGQ, ERK

@gin.configurable
class RandomPruning(StaticMask):
    """``method='random'``: a random mask under a layer-wise budget (uniform by default)."""

    default_distribution = "uniform"

    def __init__(self, config, distribution=None, init_seed=None):
        super().__init__(config)
        distribution = distribution or self.default_distribution
        allowed = tuple(d for d in distributions.DISTRIBUTIONS if d != "snip")
        if distribution not in allowed:
            raise ValueError(f"Unknown sparsity distribution {distribution!r}; allowed: "
                             f"{allowed}.")
        self.distribution = distribution
        self.init_seed = checks.seed(config.seed if init_seed is None
                                                  else init_seed)

    def make_masks(self, exp):
        net = exp.build_net()
        distributions.init_sparse(net, self.density, self.distribution, self.init_seed)
        return net

    def describe(self, exp, net):
        return {"distribution": self.distribution, "init_seed": self.init_seed}

    def settings(self, exp=None):
        return {"distribution": self.distribution, "init_seed": self.init_seed}


@gin.configurable
class IGQPruning(RandomPruning):
    """``method='igq'``: random mask with Ideal Gas Quotas layer densities, static."""

    default_distribution = "igq"

    def __init__(self, config, init_seed=None):
        super().__init__(config, distribution="igq", init_seed=init_seed)


@gin.configurable
class ERKPruning(RandomPruning):
    """``method='erk'``: random mask with Erdos-Renyi-Kernel layer densities, static."""

    default_distribution = "erk"

    def __init__(self, config, init_seed=None):
        super().__init__(config, distribution="erk", init_seed=init_seed)


# ---------------------------------------------------------------------------------------------
# pruning at initialisation

def scoring_batches(splits, samples, batch_size):
    """The first ``samples`` training examples in batches of ``batch_size`` (NumPy).

    A trailing batch of a single example is dropped (TF 2.21's oneDNN conv backprop can crash on
    batch 1), unless it is the only one.
    """
    ds = splits.train.unbatch().take(int(samples)).batch(int(batch_size))
    batches = [(np.asarray(x), np.asarray(y)) for x, y in ds.as_numpy_iterator()]
    if len(batches) > 1 and len(batches[-1][0]) == 1:
        batches = batches[:-1]
    if not batches:
        raise ValueError("No training data to score the pruning-at-init masks with.")
    return batches


@gin.configurable
class PruneAtInit(StaticMask):
    """``method='prune_at_init'``: Synaptic-Flow's prune loop with any scorer, at init.

    ``samples_per_class * num_classes`` training samples at ``batch_size`` form the prune set
    (Synaptic-Flow: ``prune_dataset_ratio=10``, ``prune_batch_size=256``); ``rounds=None`` means
    100 for SynFlow and 1 for the others.
    """

    def __init__(self, config, scorer="snip", rounds=None, schedule="exponential",
                 samples_per_class=10, batch_size=256, temperature=200.0, seed=None):
        super().__init__(config)
        if scorer not in scorers.SCORERS:
            raise ValueError(f"Unknown scorer {scorer!r}; allowed: {list(scorers.SCORERS)}.")
        if rounds is not None:
            checks.integer(f"{scorer} rounds", rounds, 1)
        if schedule not in scorers.ROUND_SCHEDULES:
            raise ValueError(f"Unknown pruning schedule {schedule!r}; allowed: "
                             f"{list(scorers.ROUND_SCHEDULES)}.")
        checks.integer("samples_per_class", samples_per_class, 1)
        checks.integer("batch_size", batch_size, 2)
        if not float(temperature) > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}.")
        self.scorer = scorer
        self.rounds = int(rounds) if rounds is not None else (100 if scorer == "synflow" else 1)
        self.schedule = schedule
        self.samples_per_class = int(samples_per_class)
        self.batch_size = int(batch_size)
        self.temperature = float(temperature)
        self.seed = checks.seed(config.seed if seed is None else seed)

    def make_masks(self, exp):
        net = exp.build_net()
        batches = None
        if self.scorer in ("snip", "grasp"):
            batches = scoring_batches(exp.splits,
                                      self.samples_per_class * exp.splits.num_classes,
                                      self.batch_size)
        scorers.prune_at_init(net, self.density, self.scorer, batches, self.rounds,
                              self.schedule, self.temperature, self.seed)
        return net

    def settings(self, exp=None):
        """Scorer and prune loop as used; the prune set's size and GraSP's temperature only
        where the scorer reads them (SynFlow scores an all-ones input)."""
        out = {"scorer": self.scorer, "rounds": self.rounds, "schedule": self.schedule,
               "seed": self.seed}
        if self.scorer in ("snip", "grasp"):
            out.update(samples_per_class=self.samples_per_class, batch_size=self.batch_size)
        if self.scorer == "grasp":
            out["temperature"] = self.temperature
        return out

    def describe(self, exp, net):
        out = {"scorer": self.scorer, "rounds": self.rounds, "schedule": self.schedule}
        if self.scorer in ("snip", "grasp"):
            out["scoring_samples"] = self.samples_per_class * exp.splits.num_classes
        if self.scorer == "grasp":
            out["temperature"] = self.temperature
        return out


@gin.configurable
class SNIP(PruneAtInit):
    """``method='snip'``: SNIP (Lee et al., 2019), one round, global."""


    def __init__(self, config, samples_per_class=10, batch_size=256, seed=None):
        super().__init__(config, scorer="snip", rounds=1, samples_per_class=samples_per_class,
                         batch_size=batch_size, seed=seed)


@gin.configurable
class GraSP(PruneAtInit):
    """``method='grasp'``: GraSP (Wang et al., 2020), temperature 200, one round, global."""


    def __init__(self, config, temperature=200.0, samples_per_class=10, batch_size=256,
                 seed=None):
        super().__init__(config, scorer="grasp", rounds=1, samples_per_class=samples_per_class,
                         batch_size=batch_size, temperature=temperature, seed=seed)


@gin.configurable
class SynFlow(PruneAtInit):
    """``method='synflow'``: iterative SynFlow (Tanaka et al., 2020), 100 rounds, exponential."""


    def __init__(self, config, rounds=100, schedule="exponential", seed=None):
        checks.integer("SynFlow rounds", rounds, 1)
        super().__init__(config, scorer="synflow", rounds=rounds, schedule=schedule, seed=seed)


# ---------------------------------------------------------------------------------------------
# one-shot magnitude pruning after dense training

@gin.configurable
class OMP(StaticMask):
    """``method='omp'``: dense (PGD-)training, global L1 pruning over conv + fc, retraining.

    ``pretrain_milestones`` defaults to 100/150, the paper's recipe for every experiment (it
    states none for OMP); the reference's ``train_base.py`` uses 50/150
    (``gin/table1/omp_resnet18_official_code.gin``).

    The pre-training's rows go to ``pretrain_metrics.csv``. It is not checkpointed: a crash
    during it restarts it on resume.
    """

    def __init__(self, config, pretrain="pgd", pretrain_epochs=200,
                 pretrain_milestones=(100, 150), pretrain_lr=None, pretrain_robust_eval=False):
        super().__init__(config)
        self.pretrain = stages.check_mode(pretrain, "pretrain")
        self.pretrain_epochs = checks.integer("pretrain_epochs", pretrain_epochs)
        self.pretrain_milestones = checks.milestones(
            "pretrain", pretrain_milestones, self.pretrain_epochs, "pretrain_epochs")
        if pretrain_lr is not None and not pretrain_lr > 0:
            raise ValueError(f"pretrain_lr must be > 0, got {pretrain_lr!r}.")
        self.pretrain_lr = pretrain_lr
        self.pretrain_robust_eval = bool(pretrain_robust_eval)

    def make_masks(self, exp):
        dense = exp.build_net()
        trainer = stages.make_stage_trainer(exp, dense, self.pretrain, self.pretrain_epochs,
                                            self.pretrain_milestones, self.pretrain_lr)
        self._rows = stages.run_pre_stage(exp, trainer, self.pretrain_epochs,
                                          "pretrain", "pretrain",
                                          robust_eval=self.pretrain_robust_eval)
        ticket = magnitude.global_magnitude_masks(dense, self.density, layer_filter="all",
                                                  rule="l1_unstructured")
        net = exp.build_net()
        stages.copy_weights(dense, net)
        masks_lib.set_masks(net, ticket)
        return net

    def settings(self, exp=None):
        """The dense pre-training as used (``pretrain_lr`` ``None`` is the run's lr)."""
        return {"pretrain": self.pretrain, "pretrain_epochs": self.pretrain_epochs,
                "pretrain_milestones": list(self.pretrain_milestones),
                "pretrain_lr": float(self.pretrain_lr if self.pretrain_lr is not None
                                     else self.config.lr),
                "pretrain_robust_eval": self.pretrain_robust_eval}

    def describe(self, exp, net):
        last = self._rows[-1] if self._rows else {}
        # stage1_* name the dense pre-stage in results.json (``costs`` hands them to FLOPs).
        out = {"pretrain": self.pretrain, "pretrain_epochs": len(self._rows),
               "stage1_epochs_run": len(self._rows),
               "stage1_pgd_steps": stages.attack_steps(self.pretrain, self.config),
               "pretrain_final_val_sa": last.get("val_sa")}
        if "val_ra" in last:
            out["pretrain_final_val_ra"] = last["val_ra"]
        return out

    def costs(self, exp, model):
        return method.pre_stage_costs(self.load_info(exp))


# ---------------------------------------------------------------------------------------------
# Small Dense

@gin.configurable
class SmallDense(method.Method):
    """``method='small_dense'``: a narrowed PreActResNet-18 with ~``1 - s`` of its weights.

    Trained densely (no masks set); ``results.json`` reports ``param_equivalent_sparsity`` =
    1 - (its conv + fc weights) / (the full PreActResNet-18's at the same base width).
    """

    sparse = True
    ARCHS = ("preact_resnet18", "small_dense")

    def __init__(self, config):
        super().__init__(config)
        checks.target_sparsity(config)
        if config.arch not in self.ARCHS:
            raise ValueError(f"small_dense narrows a PreActResNet-18; train_eval.arch must be one "
                             f"of {self.ARCHS}, got {config.arch!r}.")
        extra = set(config.arch_kwargs) - {"width", "init", "density"}
        if extra:
            raise ValueError(f"small_dense accepts arch_kwargs width/init only, got "
                             f"{sorted(extra)}.")
        given = config.arch_kwargs.get("density")
        if given is not None and abs(float(given) - (1.0 - config.sparsity)) > 1e-9:
            raise ValueError(f"arch_kwargs density {given!r} contradicts train_eval.sparsity "
                             f"{config.sparsity!r}; set only the sparsity.")
        self.widths = None

    def build(self, exp):
        kwargs = {k: v for k, v in exp.config.arch_kwargs.items() if k in ("width", "init")}
        with exp.strategy.scope():
            return models_lib.build("small_dense", num_classes=exp.splits.num_classes,
                                    input_shape=exp.splits.input_shape, mean=exp.splits.mean,
                                    std=exp.splits.std, density=1.0 - self.config.sparsity,
                                    **kwargs)

    def prepare(self, exp, state):
        net = self.build(exp)
        return net, exp.make_trainer(net)

    def settings(self, exp=None):
        """The narrowed widths follow from the target sparsity and the base width."""
        return {"width": self.config.arch_kwargs.get("width", 64)}

    def results(self, exp, model):
        return small_dense_report(model.net, self.config, exp.splits)


def small_dense_report(net, config, splits):
    """Parameter counts of a Small Dense net against the full PreActResNet-18."""
    small = sum(int(np.prod(layer.kernel.shape)) for layer in masks_lib.masked_layers(net))
    width = config.arch_kwargs.get("width", 64)
    full_widths = tuple(int(round(width * m)) for m in (1, 2, 4, 8))
    full = small_dense_lib.kernel_params(full_widths, splits.input_shape[-1], splits.num_classes)
    return {"small_dense_params": small, "dense_params": full,
            "param_equivalent_sparsity": 1.0 - small / full,
            "param_equivalent_density": small / full}


# ---------------------------------------------------------------------------------------------
# gradual magnitude pruning

@gin.configurable
class GMP(method.Method):
    """``method='gmp'``: PGD-AT with tfmot-style gradual magnitude pruning (per layer).

    The schedule runs from ``begin_step`` to ``end_step`` (default: the last pruning step at or
    before ``end_fraction`` = 75% of all training steps), every ``frequency`` steps, from
    ``initial_sparsity`` to the target with ``PolynomialDecay`` (``power``) or at the target all
    along with ``ConstantSparsity``.
    """

    sparse = True

    def __init__(self, config, schedule="polynomial", initial_sparsity=0.0, power=3,
                 begin_step=0, end_step=None, end_fraction=0.75, frequency=100):
        super().__init__(config)
        checks.target_sparsity(config)
        if schedule not in gradual.GMP_SCHEDULES:
            raise ValueError(f"Unknown GMP schedule {schedule!r}; allowed: "
                             f"{gradual.GMP_SCHEDULES}.")
        checks.integer("frequency", frequency, 1)
        checks.integer("begin_step", begin_step, 0)
        if end_step is not None:
            checks.integer("end_step", end_step, begin_step)
        if not 0.0 < float(end_fraction) <= 1.0:
            raise ValueError(f"end_fraction must be in (0, 1], got {end_fraction!r}.")
        if not 0.0 <= float(initial_sparsity) < 1.0:
            raise ValueError(f"initial_sparsity must be in [0, 1), got {initial_sparsity!r}.")
        if not float(power) > 0:
            raise ValueError(f"power must be > 0, got {power!r}.")
        self.kind = schedule
        self.initial_sparsity = float(initial_sparsity)
        self.power = power
        self.begin_step, self.end_step = int(begin_step), end_step
        self.end_fraction = float(end_fraction)
        self.frequency = int(frequency)
        self.schedule = None
        self.callback = None

    def make_schedule(self, total_steps):
        begin, end = gradual.gmp_schedule_steps(total_steps, self.begin_step, self.end_step,
                                                self.end_fraction, self.frequency)
        first = begin if begin >= 1 else begin + self.frequency
        if first > min(end, total_steps):
            raise ValueError(f"The GMP schedule never prunes: training has {total_steps} steps, "
                             f"the first pruning step would be {first} and end_step is {end}; "
                             "lower frequency or begin_step.")
        return gradual.make_schedule(self.kind, self.config.sparsity, begin, end,
                                     self.frequency, self.initial_sparsity, self.power)

    def prepare(self, exp, state):
        self.schedule = self.make_schedule(self.config.epochs * exp.splits.steps_per_epoch)
        net = exp.build_net()
        return net, exp.make_trainer(net)

    def callbacks(self, exp, model, state):
        self.callback = gradual.GradualMagnitudePruning(self.schedule)
        resume.restore_callback(state, self.callback)
        return [self.callback]

    def settings(self, exp=None):
        """The schedule's knobs; with ``exp``, ``begin_step``/``end_step`` resolved as the run
        uses them (``end_step`` ``None``: the last pruning step within ``end_fraction``)."""
        out = {"schedule": self.kind, "initial_sparsity": self.initial_sparsity,
               "power": self.power, "begin_step": self.begin_step, "end_step": self.end_step,
               "end_fraction": self.end_fraction, "frequency": self.frequency}
        if self.kind == "constant":  # ConstantSparsity: the target from the first step
            del out["initial_sparsity"], out["power"]
        if exp is not None:
            total = int(self.config.epochs) * int(exp.splits.steps_per_epoch)
            out["begin_step"], out["end_step"] = gradual.gmp_schedule_steps(
                total, self.begin_step, self.end_step, self.end_fraction, self.frequency)
        return out

    def results(self, exp, model):
        out = {"gmp_schedule": self.schedule.get_config() if self.schedule else None}
        if self.callback is not None:
            out["gmp_updates"] = len(self.callback.events)
            out["gmp_events"] = self.callback.events
        return out

