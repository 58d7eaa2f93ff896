"""L-inf PGD as advertorch's ``LinfPGDAttack`` (the reference's training and evaluation attack).

Uniform random start in the eps-ball, ``steps`` signed-gradient steps of ``step_size``,
projection onto the eps-ball and onto [0, 1] after each step, last iterate returned. The model's
BatchNorm mode while crafting is ``training`` (the reference crafts training examples in train
mode, which also moves BN's running statistics).
"""
import tensorflow as tf

from birds_tf.layers.masked import reuse_effective_kernels

LOSSES = ("ce", "cw")


def validate(eps, step_size, steps, loss="ce"):
    """Refuse impossible attack settings before any work is done."""
    for name, value in (("eps", eps), ("step_size", step_size)):
        try:
            ok = float(value) >= 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"PGD {name} must be a number >= 0 (e.g. 8/255), got {value!r}.")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"PGD steps must be an integer >= 1, got {steps!r}.")
    if loss not in LOSSES:
        raise ValueError(f"Unknown PGD loss {loss!r}; allowed: {LOSSES}.")


def attack_loss(logits, y, loss="ce"):
    """Mean cross-entropy, or the CW margin ``max_{j!=y} z_j - z_y`` (CW-inf)."""
    logits = tf.cast(logits, tf.float32)
    y = tf.cast(tf.reshape(y, [-1]), tf.int32)
    if loss == "ce":
        return tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    onehot = tf.one_hot(y, tf.shape(logits)[-1], dtype=logits.dtype)
    true = tf.reduce_sum(onehot * logits, axis=-1)
    other = tf.reduce_max(logits - 1e4 * onehot, axis=-1)
    return tf.reduce_mean(other - true)


def pgd_linf_graph(model, x, y, eps, step_size, steps, random_start=True, training=False,
                   loss="ce", rng=None, seed=None):
    """The attack as graph-friendly ops; call it inside a ``tf.function`` (e.g. ``train_step``).

    ``rng`` (a ``tf.random.Generator``) makes the random start checkpointable, so a resumed run
    draws the same starts as an uninterrupted one; ``seed`` (a shape-[2] int tensor) makes it a
    pure function of the seed, which evaluation uses so every epoch's figures are repeatable.
    """
    x = tf.convert_to_tensor(x)
    x = tf.cast(x, tf.float32)
    eps = tf.cast(eps, x.dtype)
    step_size = tf.cast(step_size, x.dtype)
    if random_start:
        if seed is not None:
            delta = tf.random.stateless_uniform(tf.shape(x), seed, -eps, eps, dtype=x.dtype)
        elif rng is not None:
            delta = rng.uniform(tf.shape(x), -eps, eps, dtype=x.dtype)
        else:
            delta = tf.random.uniform(tf.shape(x), -eps, eps, dtype=x.dtype)
        delta = tf.clip_by_value(x + delta, 0.0, 1.0) - x
    else:
        delta = tf.zeros_like(x)

    def body(i, delta):
        with tf.GradientTape() as tape:
            tape.watch(delta)
            value = attack_loss(model(x + delta, training=training), y, loss)
        # A model that blocks the gradient (e.g. stop_gradient) gets zero steps, not a crash.
        grad = tape.gradient(value, delta,
                             unconnected_gradients=tf.UnconnectedGradients.ZERO)
        delta = tf.clip_by_value(delta + step_size * tf.sign(grad), -eps, eps)
        delta = tf.clip_by_value(x + delta, 0.0, 1.0) - x
        return i + 1, delta

    # A while loop, not an unrolled Python loop: measured 7% faster on CPU (BENCHMARKS.md).
    # The weights are fixed during the attack, so masked kernels are computed once.
    with reuse_effective_kernels(model):
        _, delta = tf.while_loop(lambda i, _: i < steps, body, (tf.constant(0), delta),
                                 maximum_iterations=steps)
    return tf.stop_gradient(tf.clip_by_value(x + delta, 0.0, 1.0))


_COMPILED = {}


def pgd_linf(model, x, y, eps=8 / 255, step_size=2 / 255, steps=10, random_start=True,
             training=False, loss="ce", jit_compile=False):
    """L-inf PGD (Madry et al.): adversarial images for ``model``, a tf.Tensor like ``x``.

    Args:
      model: a callable mapping [0, 1] images to logits (a Keras model or a function).
      x: images in [0, 1], NHWC (a batch; batching is the caller's, see ``registry``).
      y: integer labels, shape (N,).
      eps: the L-inf radius.
      step_size: the signed-gradient step per iteration.
      steps: iterations (>= 1).
      random_start: start from a uniform point in the eps-ball instead of ``x``.
      training: call the model in training mode (BatchNorm on batch statistics) while crafting.
      loss: "ce" (cross-entropy) or "cw" (the margin ``max_{j!=y} z_j - z_y``).
      jit_compile: compile the attack loop with XLA.
    """
    validate(eps, step_size, steps, loss)
    if not tf.executing_eagerly():
        return pgd_linf_graph(model, x, y, eps, step_size, steps, random_start, training, loss)
    key = (id(model), float(eps), float(step_size), int(steps), bool(random_start),
           bool(training), loss, bool(jit_compile))
    fn = _COMPILED.get(key)
    if fn is None or fn[0]() is not model:
        import weakref

        def attack(x, y):
            return pgd_linf_graph(model, x, y, eps, step_size, steps, random_start, training, loss)
        fn = (weakref.ref(model), tf.function(attack, jit_compile=jit_compile, reduce_retracing=True))
        _COMPILED[key] = fn
    return fn[1](tf.convert_to_tensor(x, tf.float32), tf.convert_to_tensor(y))
