"""birds-tf: sparse adversarial training (Robust Bird, Flying Bird, Flying Bird+) in Keras 3.

The pieces a user takes into their own code are importable from here::

    import birds_tf
    net = birds_tf.sparsify(my_functional_model)          # or birds_tf.models.build(...)
    model = birds_tf.AdversarialModel(net)                # PGD-10 AT in train_step
    model.compile(optimizer=birds_tf.TorchSGD(0.1))
    model.fit(ds, epochs=..., callbacks=[birds_tf.DynamicSparsity(plus=True)])
"""
__version__ = "0.1.0"

from birds_tf import attacks, flops, models, pruning, sparsity  # noqa: E402,F401
from birds_tf.sparsity.convert import sparsify  # noqa: E402
from birds_tf.sparsity.flying_bird import DynamicSparsity  # noqa: E402
from birds_tf.training.adversarial import AdversarialModel, AttackConfig  # noqa: E402
from birds_tf.training.optimizer import MultiStepLR, TorchSGD  # noqa: E402

__all__ = ["attacks", "flops", "models", "pruning", "sparsity", "sparsify", "DynamicSparsity",
           "AdversarialModel", "AttackConfig", "TorchSGD", "MultiStepLR"]
