"""Served images/s of dense vs unstructured-sparse vs channel-shrunk PreActResNet-18, side by side,
and PGD-AT training images/s before/after the shrink. Prints one JSON line.

  python -m benchmarks.serving [--width 64] [--sparsity 0.8] [--channel-sparsity 0.5]
      [--batches 1,128] [--rounds 5] [--train-batch 32] [--pgd-steps 2] [--no-train] [--litert]

Models (random weights: speed depends on shapes only):
  dense         the plain network;
  unstructured  IGQ masks at ``--sparsity``, folded into plain kernels (what launch.export writes:
                the zeros are stored, so it runs at dense speed);
  channel       the same masks, then ``--channel-sparsity`` of the removable channels removed by
                the fb_plus_channel rule (global UMM ranking, Chase's per-layer floor) and the
                model physically shrunk (what ``launch.export --shrink`` writes).
Each round times every model once, in turn (each round starting with another model), so machine
noise hits all of them alike; medians over rounds, ratios to dense, and the per-round ratios
(dense and unstructured have the same shapes: their ratio shows the noise) are reported.
A bad value is refused on one line before TensorFlow starts (``--verbosity=0``: the traceback).
"""
import json
import os
import statistics
import sys
import time

from absl import flags

from benchmarks import flag_args
from launch import cli

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PROG = "benchmarks.serving"
FLAGS = cli.new_flags()
flags.DEFINE_integer("width", 64, "PreActResNet-18 width.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_float("sparsity", 0.8, "Unstructured sparsity of the masks, in [0, 0.99].",
                   lower_bound=0.0, upper_bound=0.99, flag_values=FLAGS)
flags.DEFINE_float("channel-sparsity", 0.5, "Fraction of the removable channels removed, "
                   "in [0, 1].", lower_bound=0.0, upper_bound=1.0, flag_values=FLAGS)
flags.DEFINE_enum("score", "layer_mean", ("layer_mean", "global"),
                  "Channel ranking: layer_mean or global (Chase's).", flag_values=FLAGS)
flags.DEFINE_string("batches", "1,128", "Comma-separated serving batch sizes.",
                    flag_values=FLAGS)
flags.DEFINE_integer("rounds", 5, "Serving rounds (each times every model once).",
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_float("min-seconds", 1.0, "Least seconds of each timing.", lower_bound=1e-3,
                   flag_values=FLAGS)
flags.DEFINE_integer("train-batch", 32, "Training batch.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("train-steps", 3, "Timed training steps per round.", lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_integer("pgd-steps", 2, "PGD steps of each training step.", lower_bound=0,
                     flag_values=FLAGS)
flags.DEFINE_integer("train-rounds", 2, "Training rounds (before/after the shrink alternated).",
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_bool("no-train", False, "Skip the training images/s.", flag_values=FLAGS)
flags.DEFINE_bool("litert", False, "Also time .tflite files (dense, sparse-optimized, shrunk) "
                  "at batch 1.", flag_values=FLAGS)


def batch_sizes(text):
    """``--batches`` as positive ints; a ValueError naming the bad value otherwise."""
    try:
        sizes = [int(b) for b in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise ValueError(f"--batches must be comma-separated positive integers (e.g. 1,128), "
                         f"got {text!r}")
    return sizes


def channel_model(net, channel_sparsity, min_ratio=0.5, score="layer_mean"):
    """``net`` (masked, sparse) with the fb_plus_channel rule's channels killed: ``{producer:
    removed}`` plus the killed masked net (its logits equal the shrunk one's)."""
    import numpy as np
    from birds_tf.sparsity import channel
    groups = channel.removable_groups(net)
    scores = [channel.umm(p.kernel.numpy(), p.mask.numpy()) for p, _, _ in groups]
    alive = [np.ones(p.filters, bool) for p, _, _ in groups]
    floors = [channel.min_kept(p.filters, channel_sparsity, min_ratio) for p, _, _ in groups]
    total = sum(p.filters for p, _, _ in groups)
    scores = channel.channel_scores(scores, alive, score)
    chosen = channel.select_channels(scores, alive, int(round(channel_sparsity * total)), floors)
    removed = {}
    for (p, _, c), idx in zip(groups, chosen):
        if idx:
            mask = c.mask.numpy()
            mask[:, :, idx, :] = 0
            c.mask.assign(mask)
            mask = p.mask.numpy()
            mask[..., idx] = 0
            p.mask.assign(mask)
            removed[p.name] = idx
    return removed


def _serve_fn(model, batch, shape):
    import tensorflow as tf
    fn = tf.function(lambda x: model(x, training=False), jit_compile=False,
                     input_signature=[tf.TensorSpec((batch,) + shape, tf.float32)])
    return fn


def _time(fn, x, min_seconds):
    fn(x)  # warm
    n, t0 = 0, time.perf_counter()
    while True:
        fn(x).numpy()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= min_seconds and n >= 2:
            return n * x.shape[0] / dt


def _train_ips(net, x, y, steps, pgd_steps):
    from birds_tf.training.adversarial import AdversarialModel, AttackConfig
    from birds_tf.training.optimizer import TorchSGD
    model = AdversarialModel(net, AttackConfig(8 / 255, 2 / 255, pgd_steps))
    model.compile(optimizer=TorchSGD(0.01, momentum=0.9))
    model.train_on_batch(x, y)  # trace
    t0 = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return steps * x.shape[0] / (time.perf_counter() - t0)


def main(argv=None):
    """Prints the one JSON line.

    Args:
      argv: the flags, without the program name (default ``sys.argv[1:]``).
    """
    cli.parse(FLAGS, argv, PROG, __doc__)
    a = flag_args.args(FLAGS)
    batches = batch_sizes(a.batches)

    from launch import quiet
    quiet.start_tensorflow(a.verbosity)  # no C++ start-up lines between the JSON output
    import keras
    import numpy as np
    import birds_tf
    from birds_tf.export.shrink import narrow, shrink
    from birds_tf.export.sparse import fold_masks
    from birds_tf.metrics import flop_count
    from birds_tf.models import common

    keras.utils.set_random_seed(0)
    shape = (32, 32, 3)
    build = lambda: birds_tf.models.build("preact_resnet18", 10, shape, dataset="cifar10",  # noqa
                                          width=a.width)
    with common.layer_kind(masked=False):
        dense = build()
    sparse_net = build()
    birds_tf.sparsity.init_sparse(sparse_net, 1.0 - a.sparsity, "igq", seed=0)
    unstructured = fold_masks(sparse_net)
    removed = channel_model(sparse_net, a.channel_sparsity, score=a.score)
    chan = shrink(sparse_net)
    x_all = np.random.default_rng(0).random((max(batches),) + shape)
    x_all = x_all.astype("float32")
    np.testing.assert_allclose(np.asarray(chan(x_all[:4], training=False)),
                               np.asarray(sparse_net(x_all[:4], training=False)), atol=1e-4)
    models = {"dense": dense, "unstructured": unstructured, "channel": chan}
    out = {"model": "preact_resnet18", "width": a.width, "sparsity": a.sparsity,
           "channel_sparsity": a.channel_sparsity, "score": a.score, "rounds": a.rounds,
           "params": {k: int(m.count_params()) for k, m in models.items()},
           "channels_removed": sum(len(v) for v in removed.values()),
           "inference_flops": {"dense": flop_count.count(sparse_net).flops_dense,
                               "channel_shrunk_dense_storage": None},
           "cpu": _cpu(), "serve_images_per_s": {}, "serve_ratio_to_dense": {}}
    counted = flop_count.count(narrow(sparse_net, removed))
    out["inference_flops"]["channel_shrunk_dense_storage"] = counted.flops_dense
    for batch in batches:
        x = x_all[:batch]
        fns = {k: _serve_fn(m, batch, shape) for k, m in models.items()}
        runs = {k: [] for k in models}
        names = list(fns)
        for r in range(a.rounds):  # each round starts with another model: no order bias
            for k in names[r % 3:] + names[:r % 3]:
                runs[k].append(_time(fns[k], x, a.min_seconds))
        med = {k: statistics.median(v) for k, v in runs.items()}
        out["serve_images_per_s"][f"batch{batch}"] = {k: round(v, 2) for k, v in med.items()}
        out["serve_ratio_to_dense"][f"batch{batch}"] = {
            k: round(v / med["dense"], 3) for k, v in med.items()}
        best = {k: max(v) for k, v in runs.items()}  # the least disturbed round of each
        out.setdefault("serve_best_images_per_s", {})[f"batch{batch}"] = {
            k: round(v, 2) for k, v in best.items()}
        out.setdefault("serve_best_ratio_to_dense", {})[f"batch{batch}"] = {
            k: round(v / best["dense"], 3) for k, v in best.items()}
        for k in ("unstructured", "channel"):
            per_round = [c / d for c, d in zip(runs[k], runs["dense"])]
            out["serve_ratio_to_dense"][f"batch{batch}_per_round_{k}"] = [
                round(v, 3) for v in per_round]
            out["serve_ratio_to_dense"][f"batch{batch}_median_per_round_{k}"] = round(
                statistics.median(per_round), 3)
    if a.litert:
        out["litert"] = _litert(models, x_all[:1], a.rounds, a.min_seconds)
    if not a.no_train:
        xt = x_all[:a.train_batch] if a.train_batch <= len(x_all) else np.random.default_rng(
            1).random((a.train_batch,) + shape).astype("float32")
        y = np.random.default_rng(1).integers(0, 10, a.train_batch).astype("int32")
        thin_net = narrow(sparse_net, removed)
        wide, thin = [], []
        for _ in range(a.train_rounds):  # alternated, medians reported
            wide.append(_train_ips(sparse_net, xt, y, a.train_steps, a.pgd_steps))
            thin.append(_train_ips(thin_net, xt, y, a.train_steps, a.pgd_steps))
        out["train_images_per_s"] = {
            "before_shrink": round(statistics.median(wide), 2),
            "after_shrink": round(statistics.median(thin), 2),
            "ratio": round(statistics.median(thin) / statistics.median(wide), 3),
            "per_round_ratio": [round(t / w, 3) for t, w in zip(thin, wide)],
            "pgd_steps": a.pgd_steps, "batch": a.train_batch, "masked": True}
    print(json.dumps(out))


def _litert(models, x, rounds, min_seconds):
    """File sizes and batch-1 images/s of the LiteRT files (interleaved rounds, medians)."""
    import tempfile

    from birds_tf.export.litert import export_litert, run_litert  # noqa: F401
    files = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model, sparse in (("dense", models["dense"], False),
                                    ("unstructured_sparse_format", models["unstructured"], True),
                                    ("channel", models["channel"], False)):
            path = os.path.join(tmp, name + ".tflite")
            files[name] = (path, export_litert(model, path, sparse=sparse))
        import warnings

        import tensorflow as tf
        calls = {}
        for name, (path, _) in files.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                it = tf.lite.Interpreter(model_path=path, num_threads=os.cpu_count())
            it.allocate_tensors()
            inp, outp = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]

            def call(x, it=it, inp=inp, outp=outp):
                it.set_tensor(inp, x)
                it.invoke()
                return it.get_tensor(outp)
            calls[name] = call
        runs = {k: [] for k in calls}
        for _ in range(rounds):
            for k, call in calls.items():
                call(x)
                n, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < min_seconds or n < 2:
                    call(x)
                    n += 1
                runs[k].append(n / (time.perf_counter() - t0))
    return {"bytes": {k: v[1] for k, v in files.items()},
            "batch1_images_per_s": {k: round(statistics.median(v), 2) for k, v in runs.items()}}


def _cpu():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def entry(argv=None):
    """``python -m benchmarks.serving``: ``main`` with a bad input as one line; exit status."""
    return flag_args.entry(main, FLAGS, PROG, argv)


if __name__ == "__main__":
    sys.exit(entry())
