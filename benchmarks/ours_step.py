"""Our PGD-10 adversarial-training step on random data, mirroring shared/bench/torch_pgd_at.py.

Prints one JSON line; run in a fresh process per configuration so each measures alone.
``benchmarks.pgd_at`` and ``benchmarks.device_bench`` run it as a subprocess, and a user may run
it alone (``python -m benchmarks.ours_step --eval=autoattack --predicted-labels``): a bad value
is refused on one line before TensorFlow starts (``--verbosity=0``: the traceback).
"""
import json
import os
import resource
import sys
import time

from absl import flags

from benchmarks import flag_args
from launch import cli

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


PROG = "benchmarks.ours_step"
FLAGS = cli.new_flags()
flags.DEFINE_integer("width", 64, "PreActResNet-18 width.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("batch", 32, "Batch (the global batch with --replicas).", lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_integer("steps", 3, "Timed training steps (after one warm-up step).",
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("pgd-steps", 10, "PGD steps of each training step.", lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_float("sparsity", 0.0, "Unstructured sparsity of the masks (IGQ), in [0, 0.99].",
                   lower_bound=0.0, upper_bound=0.99, flag_values=FLAGS)
flags.DEFINE_bool("plain", False, "Plain Conv2D/Dense, no masks.", flag_values=FLAGS)
flags.DEFINE_bool("jit", False, "Compile the step with XLA.", flag_values=FLAGS)
flags.DEFINE_bool("mask-update", False, "Also time one FB+ mask update.", flag_values=FLAGS)
flags.DEFINE_enum("eval", "", ("", "pgd20", "apgd_ce", "autoattack"),
                  "Time this attack instead of a training step (empty: the step).",
                  flag_values=FLAGS)
flags.DEFINE_enum("precision", "float32", ("float32", "mixed_bfloat16", "mixed_float16"),
                  "Keras dtype policy (train_eval.mixed_precision).", flag_values=FLAGS)
flags.DEFINE_string("save", "", "eval: write weights + data (.npz) for torch_ref.",
                    flag_values=FLAGS)
flags.DEFINE_integer("images", 0, "eval: images (0: --batch).", lower_bound=0,
                     flag_values=FLAGS)
flags.DEFINE_bool("predicted-labels", False, "eval: label each image with the model's clean "
                  "prediction, so every image is clean-correct and enters the attack (random "
                  "weights otherwise leave about 1 in 10).", flag_values=FLAGS)
flags.DEFINE_integer("train-steps", 0, "eval: first PGD-AT the model this many steps on the "
                     "fixed synthetic data set (benchmarks/trained_model.py) and attack its "
                     "held-out images.", flag_values=FLAGS)
flags.DEFINE_integer("train-pgd-steps", 5, "eval: PGD steps in training.", lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_integer("warmup-images", 0, "eval: warm up on the first this many images (0: all "
                     "of them).", flag_values=FLAGS)
flags.DEFINE_string("aa-settings", "", "eval: AutoAttack n_iter,n_queries instead of the "
                    "standard 100,5000 (tests only).", flag_values=FLAGS)
flags.DEFINE_bool("tiny", False, "Smoke test: 8x8 images.", flag_values=FLAGS)
flags.DEFINE_integer("replicas", 1, "MirroredStrategy over this many logical CPU devices (same "
                     "global batch).", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_bool("pipeline", False, "Time the augmented CIFAR-10 input pipeline alone "
                  "(images/s).", flag_values=FLAGS)


def main(argv=None):
    """Prints the one JSON line.

    Args:
      argv: the flags, without the program name (default ``sys.argv[1:]``).
    """
    cli.parse(FLAGS, argv, PROG, __doc__)
    a = flag_args.args(FLAGS)
    aa_settings = check(a)

    import numpy as np
    import keras
    import tensorflow as tf
    apply_thread_env(tf)
    if a.replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * a.replicas)
    import birds_tf
    from birds_tf.models import common

    if a.pipeline:
        print(json.dumps(_pipeline(a.batch)))
        return
    strategy = (tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(a.replicas)])
                if a.replicas > 1 else tf.distribute.get_strategy())

    if a.precision != "float32":
        keras.mixed_precision.set_global_policy(a.precision)
    size = 8 if a.tiny else 32
    keras.utils.set_random_seed(0)
    with common.layer_kind(masked=not a.plain), strategy.scope():
        net = birds_tf.models.build("preact_resnet18", 10, (size, size, 3), dataset="cifar10",
                                    width=a.width)
    if a.sparsity:
        birds_tf.sparsity.init_sparse(net, 1.0 - a.sparsity, "igq", seed=0)
    n = a.images or a.batch
    x = np.random.default_rng(0).random((n, size, size, 3)).astype("float32")
    y = np.random.default_rng(1).integers(0, 10, n).astype("int32")
    trained = {}
    if a.eval and a.train_steps:
        from benchmarks import trained_model
        trained["train_s"] = round(trained_model.train_robust(
            net, a.train_steps, batch=a.batch, pgd_steps=a.train_pgd_steps, size=size), 1)
        trained.update(train_steps=a.train_steps, train_batch=a.batch,
                       train_pgd_steps=a.train_pgd_steps)
        x, y = trained_model.synthetic_data(n, size=size, seed=1)  # held out: training is seed 0
        trained["clean_accuracy_true_labels"] = float(
            (np.asarray(net(x, training=False)).argmax(-1) == y).mean())
    out = {"framework": "birds_tf", "model": "preact_resnet18", "width": a.width,
           "batch": a.batch, "pgd_steps": a.pgd_steps, "sparsity": a.sparsity,
           "plain": a.plain, "jit": a.jit, "precision": a.precision,
           "device": "gpu" if tf.config.list_physical_devices("GPU") else "cpu"}

    if a.eval:
        from birds_tf.attacks import run_attack
        if a.predicted_labels:
            y = np.asarray(net(x, training=False)).argmax(-1).astype("int32")
        if a.save:
            np.savez(a.save, __x__=x, __y__=y,
                     **{v.path: np.asarray(v.numpy(), np.float32) for v in net.weights})
        settings = aa_settings
        from benchmarks import trained_model
        # Warm-up on the same images: AutoAttack traces each sub-attack the first time a point
        # reaches it, which a smaller warm-up set may never do (a trained model's first few
        # reach every attack: the warm-up's counts say so).
        warm = a.warmup_images or n
        t0 = time.perf_counter()
        with trained_model.count_autoattack() as warm_stats:
            run_attack(a.eval, net, x[:warm], y[:warm], batch_size=a.batch, **settings)
        out["warmup_s"] = round(time.perf_counter() - t0, 2)
        with trained_model.count_autoattack() as stats:
            t0, c0 = time.perf_counter(), time.process_time()
            result = run_attack(a.eval, net, x, y, batch_size=a.batch, **settings)
            out["images_per_s"] = round(n / (time.perf_counter() - t0), 3)
            out["cpu_s"] = round(time.process_time() - c0, 2)
        out["robust_fraction"] = float(result["robust"].mean())
        out["eval"] = a.eval
        out.update(trained)
        if a.eval == "autoattack":
            out["attacked"] = {k: v["images"] for k, v in stats.items()}
            out["attack_seconds"] = {k: round(v["seconds"], 2) for k, v in stats.items()}
            out["warmup_attacked"] = {k: v["images"] for k, v in warm_stats.items()}
        out["clean_logits"] = np.asarray(net(x[:4], training=False), np.float32).tolist()
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(out))
        return

    with strategy.scope():
        model = birds_tf.AdversarialModel(net, birds_tf.AttackConfig(
            eps=8 / 255, step_size=2 / 255, steps=a.pgd_steps), seed=0)
        model.compile(optimizer=birds_tf.TorchSGD(0.1, momentum=0.9, l2=5e-4),
                      jit_compile=a.jit)
    out["replicas"] = a.replicas
    # Dense FLOPs of one step per image: each PGD iteration is a forward and an input-gradient
    # backward (2 passes), the update a forward and both backwards (3 passes).
    out["step_flops_per_image"] = float(
        birds_tf.flops.count(net).flops_dense * (2 * a.pgd_steps + 3))
    callback = None
    if a.mask_update:
        callback = birds_tf.DynamicSparsity(plus=True, delta_t=10 ** 9, total_steps=1000)
        callback.set_model(model)
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    it = iter(ds)
    model.fit(ds, steps_per_epoch=1, epochs=1, verbose=0)  # trace + warm-up
    model.make_train_function()
    train = model.train_function
    train(it)
    t0 = time.perf_counter()
    for _ in range(a.steps):
        logs = train(it)
    float(np.asarray(logs["loss"]))
    dt = time.perf_counter() - t0
    out["images_per_s"] = round(a.batch * a.steps / dt, 3)
    out["step_s"] = dt / a.steps
    if callback is not None:
        model.request_dense_gradients(True)
        train(it)
        model.request_dense_gradients(False)
        t0 = time.perf_counter()
        callback.update_masks()
        out["mask_update_s"] = time.perf_counter() - t0
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def check(a):
    """Refuse bad options before TensorFlow starts (a ``ValueError`` or ``FileNotFoundError``
    naming the value); returns the AutoAttack overrides."""
    for name in ("train_steps", "warmup_images"):
        if getattr(a, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(a, name)}")
    if a.save and not os.path.isdir(os.path.dirname(os.path.abspath(a.save))):
        raise FileNotFoundError(f"--save={a.save}: its folder does not exist; create it first "
                                "or pass a path in an existing folder.")
    if (a.train_steps or a.aa_settings) and a.eval != "autoattack":
        raise ValueError("--train-steps and --aa-settings belong to --eval autoattack, got --eval "
                         f"{a.eval or '(none)'}")
    if not a.aa_settings:
        return {}
    try:
        n_iter, n_queries = (int(v) for v in a.aa_settings.split(","))
    except ValueError:
        n_iter = n_queries = 0
    if n_iter < 1 or n_queries < 1:
        raise ValueError("--aa-settings must be two positive integers n_iter,n_queries "
                         f"(e.g. 2,10), got {a.aa_settings!r}")
    return dict(n_iter=n_iter, n_queries=n_queries)


def apply_thread_env(tf):
    """Honour the bench's thread cap (``pgd_at --threads``) explicitly, before any op runs."""
    threading = tf.config.threading
    if os.environ.get("TF_NUM_INTRAOP_THREADS"):
        threading.set_intra_op_parallelism_threads(int(os.environ["TF_NUM_INTRAOP_THREADS"]))
    if os.environ.get("TF_NUM_INTEROP_THREADS"):
        threading.set_inter_op_parallelism_threads(int(os.environ["TF_NUM_INTEROP_THREADS"]))


def _pipeline(batch, n=8192):
    """The training input pipeline (shuffle, batch, scale, crop+flip augmentation) on uint8
    CIFAR-shaped arrays; one warm-up epoch, then one timed."""
    import numpy as np
    from birds_tf.data import pipeline, source

    rng = np.random.default_rng(0)
    split = (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
             rng.integers(0, 10, n).astype(np.int64))
    src = source.from_arrays(split, split, split, num_classes=10, input_shape=(32, 32, 3),
                             mean=(0.5,) * 3, std=(0.25,) * 3, pad=4, flip=True)
    ds = pipeline.train_pipeline(src.train, src, batch, None, n, seed=0, augment=True)
    for _ in ds:
        pass
    t0 = time.perf_counter()
    count = sum(int(xb.shape[0]) for xb, _ in ds)
    return {"framework": "birds_tf", "pipeline": "cifar10_train_augmented", "batch": batch,
            "images_per_s": round(count / (time.perf_counter() - t0), 1)}


def entry(argv=None):
    """``python -m benchmarks.ours_step``: ``main`` with a bad input as one line; exit status."""
    return flag_args.entry(main, FLAGS, PROG, argv)


if __name__ == "__main__":
    sys.exit(entry())
