"""Smoothing add-ons of paper Figure 4 for any method: knowledge distillation and SWA.

Both are off by default and switched on from gin, independently of ``train_eval.method``::

    KnowledgeDistillation.enabled = True
    KnowledgeDistillation.teacher_std = 'runs/dense_std_resnet18'   # gin/std_resnet18.gin
    KnowledgeDistillation.teacher_adv = 'runs/dense_resnet18'       # gin/dense_resnet18.gin
    SWA.enabled = True
    SWA.start_epoch = 56

``train_eval`` builds one ``Smoothing`` per run: it validates the settings before any data is
loaded, loads and checks the teachers once the data's shape is known, hands ``Experiment`` the
distilling trainer class for the main stage, adds the SWA callback to the main stage, and adds
their fields to ``results.json``.
"""
from birds_tf.training import distillation, swa as swa_lib


class Smoothing:
    def __init__(self, kd=None, swa=None):
        self.kd = kd if kd is not None else distillation.KnowledgeDistillation()
        self.swa = swa if swa is not None else swa_lib.SWA()

    @classmethod
    def disabled(cls):
        """Neither KD nor SWA, whatever gin says (for code that builds ``Experiment`` itself)."""
        return cls(distillation.KnowledgeDistillation(enabled=False), swa_lib.SWA(enabled=False))

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

    def trainer_cls(self, exp):
        """The main stage's trainer class (loads the teachers), or ``None`` for the plain one."""
        if not self.kd.enabled:
            return None
        return self.kd.trainer_factory(exp.splits, exp.strategy)

    def callbacks(self, exp, model, state):
        if not self.swa.enabled:
            return []
        from birds_tf.training import resume
        c = exp.config
        callback = swa_lib.StochasticWeightAveraging(
            model.net, self.swa.start_epoch, exp.splits.train_eval, val=exp.splits.val,
            test=exp.splits.test, attack=c.eval_attack(), strategy=exp.strategy, seed=c.seed,
            directory=exp.path("checkpoints"), build_net=exp.build_net)
        saved = resume.callback_state(state, callback)
        if saved is not None:
            callback.set_state(saved)
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
            from birds_tf.metrics import protocol
            train = callback.evaluate(exp.splits.train_eval)
            out["swa_train_ra_final"] = train["ra"]
            if "swa_ra_final" in out:
                out["swa_rgg_final"] = protocol.robust_generalization_gap(
                    train["ra"], out["swa_ra_final"])
        return out
