"""Our PGD-10 adversarial-training step on random data, mirroring shared/bench/torch_pgd_at.py.

Prints one JSON line; run in a fresh process per configuration so each measures alone.
"""
import argparse
import json
import os
import resource
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--pgd-steps", type=int, default=10)
    p.add_argument("--sparsity", type=float, default=0.0)
    p.add_argument("--plain", action="store_true", help="plain Conv2D/Dense, no masks")
    p.add_argument("--jit", action="store_true")
    p.add_argument("--mask-update", action="store_true", help="also time one FB+ mask update")
    p.add_argument("--eval", choices=["", "pgd20", "autoattack"], default="")
    a = p.parse_args()

    import numpy as np
    import keras
    import tensorflow as tf
    import birds_tf
    from birds_tf.models import common

    keras.utils.set_random_seed(0)
    with common.layer_kind(masked=not a.plain):
        net = birds_tf.models.build("preact_resnet18", 10, (32, 32, 3), dataset="cifar10",
                                    width=a.width)
    if a.sparsity:
        birds_tf.sparsity.init_sparse(net, 1.0 - a.sparsity, "igq", seed=0)
    x = np.random.default_rng(0).random((a.batch, 32, 32, 3)).astype("float32")
    y = np.random.default_rng(1).integers(0, 10, a.batch).astype("int32")
    out = {"framework": "birds_tf", "model": "preact_resnet18", "width": a.width,
           "batch": a.batch, "pgd_steps": a.pgd_steps, "sparsity": a.sparsity,
           "plain": a.plain, "jit": a.jit}

    if a.eval:
        attack = "pgd20" if a.eval == "pgd20" else "autoattack"
        from birds_tf.attacks import run_attack
        kwargs = {} if attack == "pgd20" else {}
        run_attack(attack, net, x[:4], y[:4], batch_size=a.batch, **kwargs)  # warm-up/trace
        t0 = time.perf_counter()
        run_attack(attack, net, x, y, batch_size=a.batch, **kwargs)
        out["images_per_s"] = round(a.batch / (time.perf_counter() - t0), 3)
        out["eval"] = attack
        print(json.dumps(out))
        return

    model = birds_tf.AdversarialModel(net, birds_tf.AttackConfig(
        eps=8 / 255, step_size=2 / 255, steps=a.pgd_steps), seed=0)
    model.compile(optimizer=birds_tf.TorchSGD(0.1, momentum=0.9, l2=5e-4), jit_compile=a.jit)
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


if __name__ == "__main__":
    main()
