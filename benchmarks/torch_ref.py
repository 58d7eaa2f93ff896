"""Reference-side runs in the torch venv (never imported by birds_tf; run by benchmarks/pgd_at.py).

``step``: the unchanged reference script (shared/bench/torch_pgd_at.py), optionally under
``torch.autocast("cpu", dtype=torch.bfloat16)`` (its convolutions and linear layer in bf16, the
perturbation and the loss in fp32, as autocast does), plus its peak resident memory.
``eval``: torchattacks' PGD-20, APGD-CE and AutoAttack standard (the original's settings: 100
iterations for APGD-CE, APGD-T and FAB-T, where ``torchattacks.AutoAttack`` would run its
attacks' default 10) on the reference's PreActResNet-18 carrying *our* Keras weights (an .npz
written by ``benchmarks.ours_step --save``), on the same images, so images/s and robust
fractions are comparable.
Prints one JSON line.

An internal subprocess, not a user entry point: it runs in the torch venv, which has no absl, so
it keeps argparse rather than ``launch/cli.py``'s conventions (the user commands are
``benchmarks.pgd_at`` and ``benchmarks.device_bench``).
"""
import argparse
import contextlib
import importlib.util
import io
import json
import resource
import runpy
import sys
import time


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def step(script, argv, autocast):
    import torch
    buf = io.StringIO()
    sys.argv = [script] + argv
    device = "cuda" if "cuda" in argv else "cpu"
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    # fp16 on CUDA would also need a GradScaler; the reference has none, so the speed
    # comparison is the fair one (the scaler costs little).
    ctx = (torch.autocast(device, dtype=dtypes[autocast]) if autocast in dtypes
           else contextlib.nullcontext())
    with contextlib.redirect_stdout(buf), ctx:
        runpy.run_path(script, run_name="__main__")
    line = json.loads(buf.getvalue().strip().splitlines()[-1])
    line["autocast"] = autocast
    line["peak_rss_mb"] = _peak_mb()
    return line


def _load_reference(script):
    spec = importlib.util.spec_from_file_location("torch_pgd_at", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def keras_to_torch(model, weights):
    """Copy our PreActResNet-18 weights (Keras names, HWIO kernels) into the reference model."""
    import numpy as np
    import torch

    def conv(name):
        k = weights[name + "/kernel"] * weights.get(name + "/mask", 1.0)
        return torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1)))

    def bn(module, name):
        module.weight.data = torch.from_numpy(weights[name + "/gamma"])
        module.bias.data = torch.from_numpy(weights[name + "/beta"])
        module.running_mean.data = torch.from_numpy(weights[name + "/moving_mean"])
        module.running_var.data = torch.from_numpy(weights[name + "/moving_variance"])

    model.conv1.weight.data = conv("conv1")
    for k, block in enumerate(model.blocks):
        prefix = f"layer{k // 2 + 1}_{k % 2}"
        bn(block.bn1, prefix + "_bn1")
        bn(block.bn2, prefix + "_bn2")
        block.conv1.weight.data = conv(prefix + "_conv1")
        block.conv2.weight.data = conv(prefix + "_conv2")
        if block.shortcut is not None:
            block.shortcut.weight.data = conv(prefix + "_shortcut")
    bn(model.bn, "final_bn")
    dense = weights["linear/kernel"] * weights.get("linear/mask", 1.0)
    model.linear.weight.data = torch.from_numpy(np.ascontiguousarray(dense.T))
    model.linear.bias.data = torch.from_numpy(weights["linear/bias"])
    return model


def count_attacks(multi, names):
    """Make each attack of a ``MultiAttack`` record, in the returned dict, how many images it
    is given (``MultiAttack`` passes on the ones every earlier attack failed on) and its seconds:
    ``{name: {"images", "seconds", "calls"}}``. Call ``.clear()`` on it to start again."""
    stats = {}

    def wrap(name, forward):
        def timed(images, labels, *args, **kwargs):
            t0 = time.perf_counter()
            adv = forward(images, labels, *args, **kwargs)
            entry = stats.setdefault(name, {"images": 0, "seconds": 0.0, "calls": 0})
            entry["images"] += int(images.shape[0])
            entry["seconds"] += time.perf_counter() - t0
            entry["calls"] += 1
            return adv
        return timed

    for name, atk in zip(names, multi.attacks):
        atk.forward = wrap(name, atk.forward)
    return stats


def evaluate(script, npz, attack, width, batch, warmup=4):
    import numpy as np
    import torch
    import torchattacks

    ref = _load_reference(script)
    data = dict(np.load(npz))
    model = keras_to_torch(ref.PreActResNet18(width), data).eval()
    x = torch.from_numpy(np.ascontiguousarray(data["__x__"].transpose(0, 3, 1, 2)))
    y = torch.from_numpy(data["__y__"].astype("int64"))
    eps = 8 / 255
    if attack == "pgd20":
        atk = torchattacks.PGD(model, eps=eps, alpha=eps / 4, steps=20, random_start=True)
    elif attack == "apgd_ce":
        atk = torchattacks.APGD(model, norm="Linf", eps=eps, steps=100, n_restarts=1,
                                loss="ce", seed=0)
    else:
        # torchattacks.AutoAttack(version="standard") keeps its attacks' default steps=10; the
        # original standard version (and ours) runs 100, so build the same cascade with 100.
        atk = torchattacks.MultiAttack([
            torchattacks.APGD(model, norm="Linf", eps=eps, steps=100, n_restarts=1, loss="ce",
                              seed=0),
            torchattacks.APGDT(model, norm="Linf", eps=eps, steps=100, n_restarts=1,
                               n_classes=10, seed=0),
            torchattacks.FAB(model, norm="Linf", eps=eps, steps=100, n_restarts=1,
                             multi_targeted=True, n_classes=10, seed=0),
            torchattacks.Square(model, norm="Linf", eps=eps, n_queries=5000, n_restarts=1,
                                p_init=0.8, resc_schedule=False, seed=0)])
    stats = (count_attacks(atk, ("apgd-ce", "apgd-t", "fab-t", "square"))
             if attack == "autoattack" else {})
    with torch.no_grad():
        clean_logits = model(x)
    if warmup:
        atk(x[:warmup], y[:warmup])  # warm-up, as ours
    else:  # PyTorch traces nothing: one forward + backward primes oneDNN and the allocator
        xw = x.clone().requires_grad_(True)
        torch.nn.functional.cross_entropy(model(xw), y).backward()
        model.zero_grad(set_to_none=True)  # no parameter gradients left behind
    warm_stats = {k: v["images"] for k, v in stats.items()}
    stats.clear()
    t0, c0 = time.perf_counter(), time.process_time()
    robust = []
    for lo in range(0, len(x), batch):
        adv = atk(x[lo:lo + batch], y[lo:lo + batch])
        with torch.no_grad():
            robust.append(model(adv).argmax(1) == y[lo:lo + batch])
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    robust = torch.cat(robust) & (clean_logits.argmax(1) == y)
    return {"framework": "torchattacks", "eval": attack, "images_per_s": round(len(x) / dt, 3),
            "cpu_s": round(cpu, 2), "threads": torch.get_num_threads(),
            "robust_fraction": float(robust.float().mean()),
            "attacked": {k: v["images"] for k, v in stats.items()},
            "attack_seconds": {k: round(v["seconds"], 2) for k, v in stats.items()},
            "warmup_attacked": warm_stats,
            "clean_logits_max_abs": float(clean_logits.abs().max()),
            "clean_logits": clean_logits[:4].tolist(), "peak_rss_mb": _peak_mb()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["step", "eval"], help="step: reference arguments follow --")
    p.add_argument("--script", required=True, help="the reference torch_pgd_at.py")
    p.add_argument("--autocast", choices=["none", "bf16", "fp16"], default="none")
    p.add_argument("--npz", help="eval: weights and data written by ours_step --save")
    p.add_argument("--attack", choices=["pgd20", "apgd_ce", "autoattack"], default="pgd20")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--warmup-images", type=int, default=4,
                   help="eval: run the attack on this many images first (0: one forward and "
                        "backward pass instead)")
    argv = sys.argv[1:]
    rest = argv[argv.index("--") + 1:] if "--" in argv else []
    a = p.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if a.mode == "step":
        line = step(a.script, rest, a.autocast)
    else:
        line = evaluate(a.script, a.npz, a.attack, a.width, a.batch, a.warmup_images)
    print(json.dumps(line))


if __name__ == "__main__":
    main()
