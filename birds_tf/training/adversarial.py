"""PGD adversarial training as a ``keras.Model``, so ``fit``, callbacks and strategies just work.

``train_step`` crafts the training attack (PGD-10 by default, BN in train mode as the reference
does), then takes one optimizer step on the adversarial batch. When a sparsity callback asks for
it, the same backward pass also yields the dense gradient with respect to every masked layer's
effective kernel (``kernel * mask``), summed over replicas, for gradient-based growth.
"""
import dataclasses

import keras
import tensorflow as tf

from birds_tf.attacks import pgd
from birds_tf.layers.masked import capture_effective_kernels, route_strided_pointwise
from birds_tf.sparsity.masks import masked_layers

BN_MODES = ("train", "eval")


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    """L-inf PGD settings for crafting training (or evaluation) examples.

    ``steps=0`` (or ``eps=0``) means clean training: no attack is run. Values are checked here,
    so a bad setting fails before any training.

    Args:
      eps: the L-inf radius in [0, 1] pixel units (the paper's 8/255).
      step_size: the PGD step per iteration (the paper's 2/255).
      steps: PGD iterations (10 for training in the paper); 0 for clean training.
      random_start: start from a uniform point in the eps-ball (Madry et al.) instead of x.
      bn_mode: BatchNorm while crafting: "train" (batch statistics, as the reference crafts
        under ``model.train()``) or "eval" (running statistics).
    """

    eps: float = 8 / 255
    step_size: float = 2 / 255
    steps: int = 10
    random_start: bool = True
    bn_mode: str = "train"

    def __post_init__(self):
        if self.steps != 0:
            pgd.validate(self.eps, self.step_size, self.steps)
        elif self.eps < 0:
            raise ValueError(f"eps must be >= 0, got {self.eps!r}.")
        if self.bn_mode not in BN_MODES:
            raise ValueError(f"Unknown BN mode for crafting {self.bn_mode!r}; allowed: "
                             f"{BN_MODES}.")

    @property
    def clean(self):
        return self.steps == 0 or self.eps == 0


def cross_entropy(y, logits):
    """Per-example cross-entropy in float32 (logits may be float16 under mixed precision)."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(tf.reshape(y, [-1]), tf.int32), logits=tf.cast(logits, tf.float32))


@keras.saving.register_keras_serializable(package="birds_tf")
class AdversarialModel(keras.Model):
    """Wraps a classifier ``net`` (``[0,1]`` images -> logits) with PGD adversarial training.

    ``train_step`` crafts PGD examples with ``train_attack`` and trains on them alone (Madry
    et al.); its metrics are the running ``loss`` and ``ra`` (robust accuracy on the crafted
    batch, a fraction). Sparse training reads the dense gradient it records after
    ``enable_dense_gradients()`` (Flying Bird's gradient growth).

    Args:
      net: a Keras classifier mapping ``[0, 1]`` images to logits (``birds_tf.models`` or
        ``birds_tf.sparsify(model)``); it is trained in place and saved on its own.
      train_attack: an ``AttackConfig`` for the training examples (default PGD-10, eps 8/255,
        step 2/255).
      seed: seeds the generator of PGD's random starts (checkpointed with the trainer, so a
        resumed run repeats an uninterrupted one); None draws a non-deterministic seed.
      **kwargs: passed to ``keras.Model`` (e.g. ``name``).
    """

    def __init__(self, net, train_attack=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.net = net
        # Plain strided 1x1 convs of a user's own model get the subsample form (the same
        # function; TF 2.21's oneDNN kernel crashes on odd batches, see layers/masked.py).
        route_strided_pointwise(net)
        self.train_attack = train_attack if train_attack is not None else AttackConfig()
        # The random starts of PGD come from a generator whose state is checkpointed with the
        # trainer (see training/resume.py), so resumed runs repeat uninterrupted ones.
        self.rng = (tf.random.Generator.from_seed(seed) if seed is not None
                    else tf.random.Generator.from_non_deterministic_state())
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="ra")
        self._dense_grads = None
        self._capture_flag = None

    def call(self, x, training=False):
        return self.net(x, training=training)

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker]

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras builds lazily from a first batch that it reduces with ``strategy.reduce``, which
        # fails under MultiWorkerMirroredStrategy. The classifier is already built; only the
        # optimizer's slots are missing, so build exactly that.
        if self.net.built and self._distribute_strategy is not None:
            if self.optimizer is not None and not self.optimizer.built:
                with self.distribute_strategy.scope():
                    self.optimizer.build(self.trainable_variables)
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    # -- dense gradients for growth ------------------------------------------------------------
    def enable_dense_gradients(self):
        """Create the storage the growth step reads; idempotent. Call before ``fit``."""
        if self._dense_grads is not None:
            return
        layers = masked_layers(self.net)
        if not layers:
            raise ValueError("The model has no masked layers; build it from birds_tf.models or "
                             "convert it with birds_tf.sparsify(model).")
        strategy = tf.distribute.get_strategy() if not self.distribute_strategy else \
            self.distribute_strategy
        with strategy.scope():
            # On-read SUM: each replica stores its own (already 1/global-batch scaled) gradient;
            # reading in cross-replica context gives the all-reduced gradient.
            self._dense_grads = {
                id(layer): tf.Variable(
                    tf.zeros(layer.kernel.shape, tf.float32), trainable=False,
                    synchronization=tf.VariableSynchronization.ON_READ,
                    aggregation=tf.VariableAggregation.SUM, name=f"dense_grad_{i}")
                for i, layer in enumerate(layers)}
            self._capture_flag = tf.Variable(
                False, trainable=False, synchronization=tf.VariableSynchronization.ON_WRITE,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA, name="capture_flag")
        # A train function traced without capture must be retraced.
        self.train_function = None

    def request_dense_gradients(self, flag=True):
        self._capture_flag.assign(bool(flag))

    def dense_gradient(self, layer):
        """The all-reduced dense gradient recorded at the last capturing step."""
        return self._dense_grads[id(layer)].read_value()

    # -- steps ----------------------------------------------------------------------------------
    def craft(self, x, y, attack, training):
        return pgd.pgd_linf_graph(self.net, x, y, attack.eps, attack.step_size, attack.steps,
                                  attack.random_start, training=training, rng=self.rng)

    def compute_example_loss(self, x_adv, y, logits):
        """Per-example training loss; subclasses (e.g. distillation) override it."""
        return cross_entropy(y, logits)

    def train_step(self, data):
        x, y = data[0], data[1]
        attack = self.train_attack
        x = tf.cast(x, tf.float32)
        x_adv = x if attack.clean else self.craft(x, y, attack, attack.bn_mode == "train")
        variables = self.trainable_variables
        capture = self._dense_grads is not None
        with tf.GradientTape() as tape:
            with capture_effective_kernels() as effective:
                logits = self.net(x_adv, training=True)
            loss = tf.nn.compute_average_loss(self.compute_example_loss(x_adv, y, logits))
            scaled = self.optimizer.scale_loss(loss)
        targets = list(variables)
        layer_ids = [key for key in effective] if capture else []
        targets += [effective[key] for key in layer_ids]
        grads = tape.gradient(scaled, targets)
        self.optimizer.apply(grads[:len(variables)], variables)
        if capture:
            self._store_dense_grads(layer_ids, grads[len(variables):])
        self.loss_tracker.update_state(loss * tf.cast(
            tf.distribute.get_strategy().num_replicas_in_sync, loss.dtype))
        self.accuracy_tracker.update_state(y, logits)
        return self._metric_results()

    def _metric_results(self):
        results = {m.name: m.result() for m in self.metrics}
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras reduces multi-worker outputs with ``reduce(MEAN, axis=0)``, which needs a
            # batch axis; scalars fail there.
            results = {k: tf.reshape(v, [1]) for k, v in results.items()}
        return results

    def _store_dense_grads(self, layer_ids, grads):
        unscale = 1.0
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            unscale = 1.0 / tf.cast(self.optimizer.dynamic_scale, tf.float32)

        def store():
            for key, g in zip(layer_ids, grads):
                self._dense_grads[key].assign(tf.cast(g, tf.float32) * unscale)
            return tf.constant(True)

        tf.cond(self._capture_flag, store, lambda: tf.constant(False))

    def test_step(self, data):
        x, y = data[0], data[1]
        logits = self.net(tf.cast(x, tf.float32), training=False)
        loss = tf.nn.compute_average_loss(cross_entropy(y, logits))
        self.loss_tracker.update_state(loss * tf.cast(
            tf.distribute.get_strategy().num_replicas_in_sync, loss.dtype))
        self.accuracy_tracker.update_state(y, logits)
        return self._metric_results()

    def get_config(self):
        return {"net": keras.saving.serialize_keras_object(self.net),
                "train_attack": dataclasses.asdict(self.train_attack)}

    @classmethod
    def from_config(cls, config):
        net = keras.saving.deserialize_keras_object(config.pop("net"))
        return cls(net, AttackConfig(**config.pop("train_attack")), **config)
