"""Smoothing add-ons of paper Figure 4 for any method: knowledge distillation and SWA.

Both are off by default and switched on from gin, independently of ``train_eval.method``::

    KnowledgeDistillation.enabled = True
    KnowledgeDistillation.teacher_std = 'runs/dense_std_resnet18'   # gin/figure4/std_resnet18.gin
    KnowledgeDistillation.teacher_adv = 'runs/dense_resnet18'       # gin/table1/dense_resnet18.gin
    SWA.enabled = True
    SWA.start_epoch = 56

``train_eval`` builds one ``Smoothing`` per run: it validates the settings before any data is
loaded, loads and checks the teachers once the data's shape is known, hands ``Experiment`` the
distilling trainer class for the main stage, adds the SWA callback to the main stage, and adds
their fields to ``results.json``.
"""
import gin

from birds_tf.metrics import flop_count, protocol
from birds_tf.training import distillation, resume
from birds_tf.training import swa as swa_lib
from birds_tf.utils import checks


@gin.configurable
class KnowledgeDistillation:
    """Gin settings of the KD term (weights and temperature default to the reference's).

    A teacher given as a workdir is read from ``checkpoints/<teacher_*_checkpoint>.keras``: the
    PGD teacher's ``best`` (highest validation RA, the early-stopped model), the standard
    teacher's ``final`` (its validation RA is ~0 at every epoch, so "best by RA" would pick an
    arbitrary epoch). A ``.keras`` file or SavedModel folder is used as it is.
    """

    def __init__(self, enabled=False, teacher_std=None, teacher_adv=None,
                 teacher_std_checkpoint="final", teacher_adv_checkpoint="best", ce_weight=0.3,
                 std_weight=0.1, adv_weight=0.6, temperature=2.0):
        self.enabled = enabled
        self.teacher_std = teacher_std
        self.teacher_adv = teacher_adv
        self.teacher_std_checkpoint = teacher_std_checkpoint
        self.teacher_adv_checkpoint = teacher_adv_checkpoint
        self.ce_weight = ce_weight
        self.std_weight = std_weight
        self.adv_weight = adv_weight
        self.temperature = temperature
        self.teachers = None

    def validate(self):
        """Values and paths, before any data is loaded."""
        if not isinstance(self.enabled, bool):
            raise ValueError(f"KnowledgeDistillation.enabled must be True or False, got "
                             f"{self.enabled!r}.")
        if not self.enabled:
            return self
        for name in ("ce_weight", "std_weight", "adv_weight"):
            value = getattr(self, name)
            if not checks.finite_number(value) or value < 0:
                raise ValueError(f"KnowledgeDistillation.{name} must be a number >= 0, got "
                                 f"{value!r}.")
        if self.ce_weight + self.std_weight + self.adv_weight <= 0:
            raise ValueError("KnowledgeDistillation weights are all 0: nothing to train on.")
        if not checks.finite_number(self.temperature) or self.temperature <= 0:
            raise ValueError(f"KnowledgeDistillation.temperature must be > 0, got "
                             f"{self.temperature!r}.")
        for role in self._roles():
            distillation.resolve_teacher_path(getattr(self, role),
                                              getattr(self, role + "_checkpoint"), role)
        return self

    def _roles(self):
        return [role for role, w in (("teacher_std", self.std_weight),
                                     ("teacher_adv", self.adv_weight)) if w > 0]

    def load(self, splits, strategy=None):
        """Load the teachers and check them against the data; returns ``[(teacher, weight)]``."""
        weights = {"teacher_std": self.std_weight, "teacher_adv": self.adv_weight}
        self.teachers = {}
        for role in self._roles():
            teacher = distillation.load_teacher(getattr(self, role),
                                                getattr(self, role + "_checkpoint"),
                                                role, strategy)
            distillation.check_teacher(teacher, splits.num_classes, splits.input_shape, role)
            self.teachers[role] = teacher
        return [(self.teachers[r], weights[r]) for r in self._roles()]

    def trainer_factory(self, splits, strategy=None):
        """A ``trainer_cls`` for ``Experiment.make_trainer`` that distils from the teachers."""
        teachers = self.load(splits, strategy)
        ce_weight, temperature = self.ce_weight, self.temperature

        def make(net, train_attack=None, seed=None, **kwargs):
            return distillation.DistillationModel(net, train_attack, seed=seed, teachers=teachers,
                                     ce_weight=ce_weight, temperature=temperature, **kwargs)

        return make

    def results(self, num_train=None, epochs=None):
        """Settings and teachers; with ``num_train`` and ``epochs``, also the FLOPs of the teachers'
        forward passes during training (not in ``training_flops``, which counts the student)."""
        if not self.enabled:
            return {"kd": False}
        flops_per_example = None
        if self.teachers and all(t.net is not None for t in self.teachers.values()):
            flops_per_example = sum(flop_count.count(t.net).flops for t in self.teachers.values())
        return {"kd": True, "kd_ce_weight": float(self.ce_weight),
                "kd_std_weight": float(self.std_weight),
                "kd_adv_weight": float(self.adv_weight),
                "kd_temperature": float(self.temperature),
                "kd_teacher_std": self._source("teacher_std"),
                "kd_teacher_adv": self._source("teacher_adv"),
                "kd_teacher_forward_flops": None if flops_per_example is None or not num_train
                else float(flops_per_example) * num_train * epochs}

    def _source(self, role):
        teacher = (self.teachers or {}).get(role)
        return teacher.source if teacher is not None else getattr(self, role)


@gin.configurable
class SWA:
    """Gin settings: ``SWA.enabled = True`` and ``SWA.start_epoch`` (1-based, reference 56)."""

    def __init__(self, enabled=False, start_epoch=56):
        self.enabled = enabled
        self.start_epoch = start_epoch
        self.callback = None

    def validate(self, epochs):
        if not isinstance(self.enabled, bool):
            raise ValueError(f"SWA.enabled must be True or False, got {self.enabled!r}.")
        if not self.enabled:
            return self
        checks.integer("SWA.start_epoch", self.start_epoch, 1)
        if self.start_epoch > epochs:
            raise ValueError(f"SWA.start_epoch {self.start_epoch} is beyond the last epoch "
                             f"({epochs}): nothing would be averaged. Lower it or raise "
                             "train_eval.epochs.")
        return self




class Smoothing:
    def __init__(self, kd=None, swa=None):
        self.kd = kd if kd is not None else KnowledgeDistillation()
        self.swa = swa if swa is not None else SWA()

    @classmethod
    def disabled(cls):
        """Neither KD nor SWA, whatever gin says (for code that builds ``Experiment`` itself)."""
        return cls(KnowledgeDistillation(enabled=False), SWA(enabled=False))

    @classmethod
    def from_gin(cls, config):
        """The gin-bound settings, validated against ``config`` (before any data is loaded)."""
        return cls().validate(config)

    def validate(self, config):
        self.kd.validate()
        self.swa.validate(config.epochs)
        return self

    @property
    def enabled(self):
        return self.kd.enabled or self.swa.enabled

    def trainer_cls(self, splits, strategy=None):
        """The main stage's trainer class (loads the teachers), or ``None`` for the plain one."""
        if not self.kd.enabled:
            return None
        return self.kd.trainer_factory(splits, strategy)

    def callbacks(self, exp, model, state):
        if not self.swa.enabled:
            return []
        c = exp.config
        callback = swa_lib.StochasticWeightAveraging(
            model.net, self.swa.start_epoch, exp.splits.train_eval, val=exp.splits.val,
            test=exp.splits.test, attack=c.eval_attack(), strategy=exp.strategy, seed=c.seed,
            directory=exp.files.checkpoints_dir, build_net=exp.build_net)
        resume.restore_callback(state, callback)
        self.swa.callback = callback
        return [callback]

    def results(self, exp, model):
        out = self.kd.results(exp.splits.num_train, len(exp.history))
        out["swa"] = bool(self.swa.enabled)
        if not self.swa.enabled:
            return out
        callback = self.swa.callback
        out["swa_start_epoch"] = self.swa.start_epoch
        out["swa_updates"] = callback.n if callback is not None else 0
        out.update(swa_lib.history_results(exp.history))
        if exp.config.rgg_eval and callback is not None and callback.n > 0:
            train = callback.evaluate(exp.splits.train_eval)
            out["swa_train_ra_final"] = train["ra"]
            if "swa_ra_final" in out:
                out["swa_rgg_final"] = protocol.robust_generalization_gap(
                    train["ra"], out["swa_ra_final"])
        return out
