"""``make bench``: our PGD-10 AT step against the PyTorch reference, side by side, one process
tree, same shapes; plus the masks' overhead, one FB+ mask update against one training step,
evaluation throughput against torchattacks (same weights and images; AutoAttack also on a model
trained inside the bench, with the images each attack is given counted on both sides), each
side's step against its convolution ceiling (``conv_ops``), the bfloat16 path against the
reference under ``torch.autocast``, MirroredStrategy scaling, the input pipeline and peak memory.
The first line (``header``) names the CPU (``lscpu``), the commit, the threads and the load.
Each comparison prints one JSON line ``{"name", "ours", "reference", "unit", "ratio"}``
(ratio = ours / reference; for overheads, masked / unmasked time).

The reference runs in its own venv (``.venv-torch``, torch==2.13.0 CPU), created on first use.

  python -m benchmarks.pgd_at [--quick] [--jit] [--repeats N] [--only steps,ceiling,...]
      [--threads N] [--verbosity -1|0|1]

A bad flag value or a missing reference script is refused on one line before anything runs
(``--verbosity=0`` adds the traceback).
"""
import json
import os
import subprocess
import sys
import tempfile

from absl import flags

from benchmarks import flag_args
from birds_tf.utils import machine
from launch import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH_VENV = os.path.join(ROOT, ".venv-torch")
TORCH_SCRIPT = os.path.join(ROOT, "..", "shared", "bench", "torch_pgd_at.py")
SHAPES = ((64, 32), (16, 64))
CEILING_SHAPE = (64, 32)  # issue 26: the w64 step, where the convolutions dominate
PARTS = ("steps", "ceiling", "scaling", "eval", "trained_eval")
TRAIN_STEPS = 30  # PGD-AT steps of the trained-model AutoAttack line's model
# The trained-model AutoAttack line's warm-up: ours runs the cascade on the first image (it traces
# each attack's graph, a one-time cost printed as warmup_s); PyTorch traces nothing, so the
# reference only runs one forward + backward pass (a full cascade would double its run time).
WARMUP, REF_WARMUP = 1, 0


_CHECKED = []


def torch_python():
    python = os.path.join(TORCH_VENV, "bin", "python")
    if os.path.exists(python) and not _CHECKED:
        # A venv made before the evaluation lines existed lacks torchattacks.
        if subprocess.run([python, "-c", "import torchattacks"],
                          capture_output=True).returncode != 0:
            subprocess.run([python, "-m", "pip", "install", "--quiet", "torchattacks==3.5.1"],
                           check=True)
        _CHECKED.append(True)
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", TORCH_VENV], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", "torch==2.13.0", "numpy",
                        "torchattacks==3.5.1"], check=True)
    return python


# Threads of every process the bench starts, both sides (--threads; empty: each library's default).
THREAD_ENV = {}


def thread_env(threads):
    """Environment that caps TensorFlow's and PyTorch's (OpenMP's) threads at ``threads``."""
    n = str(threads)
    return {"OMP_NUM_THREADS": n, "TF_NUM_INTRAOP_THREADS": n, "TF_NUM_INTEROP_THREADS": n}


def _json_line(cmd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT, **THREAD_ENV)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ours(**kwargs):
    cmd = [sys.executable, "-m", "benchmarks.ours_step"]
    for key, value in kwargs.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            cmd.append(flag)
        elif value not in (False, None):
            cmd += [flag, str(value)]
    return _json_line(cmd)


REF_DRIVER = os.path.join(ROOT, "benchmarks", "torch_ref.py")


def reference(width, batch, steps, autocast="none"):
    """The unchanged reference script (optionally under torch.autocast bf16), with peak RSS."""
    return _json_line([torch_python(), REF_DRIVER, "step", "--script", TORCH_SCRIPT,
                       "--autocast", autocast, "--", "--width", str(width), "--batch",
                       str(batch), "--steps", str(steps)])


def reference_eval(npz, attack, width, batch, warmup_images=4):
    return _json_line([torch_python(), REF_DRIVER, "eval", "--script", TORCH_SCRIPT, "--npz",
                       npz, "--attack", attack, "--width", str(width), "--batch", str(batch),
                       "--warmup-images", str(warmup_images)])


def cpu_model():
    """``lscpu``'s model name (``/proc/cpuinfo``'s where lscpu is missing), or "unknown"."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        out = ""
    for line in out.splitlines():
        if line.strip().lower().startswith("model name:"):
            return line.split(":", 1)[1].strip()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def cpu_flags():
    """The CPU features the ratios depend on (oneDNN's kernel choice)."""
    return machine.cpu_flags()


def commit():
    """``git rev-parse --short HEAD``, with "+changes" if the work tree's code (not
    ``results/``) differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True).stdout.strip()
        # Code only: results/ is data a run in the same checkout may be writing.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ":(top)", ":(top,exclude)results"],
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return None
    return (head + ("+changes" if dirty else "")) or None


def _load_average():
    """The 1-minute load average at the start (above the core count: the figures are loaded)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def header():
    """The first line of a run: which CPU and code the figures belong to."""
    line = {"name": "header", "cpu": cpu_model(), "cpu_flags": cpu_flags(),
            "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
            "logical_cpus": os.cpu_count(), "commit": commit(),
            "threads": THREAD_ENV.get("OMP_NUM_THREADS", "default"),
            "load_average": _load_average()}
    print(json.dumps(line), flush=True)
    return line


def cpu_bf16():
    """Whether this CPU has native bf16 math (AVX512-BF16 or AMX-BF16)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def best(runs, key="images_per_s"):
    """The fastest of repeated runs: on a shared machine, slowdowns are noise, speed-ups not."""
    return max(runs, key=lambda r: r[key])


def emit(name, ours_value, reference_value, unit, ratio=None, **extra):
    if ratio is None and ours_value and reference_value:
        ratio = ours_value / reference_value
    line = {"name": name, "ours": ours_value, "reference": reference_value, "unit": unit,
            "ratio": None if ratio is None else round(ratio, 3)}
    line.update(extra)
    print(json.dumps(line), flush=True)
    return line


PROG = "benchmarks.pgd_at"
FLAGS = cli.new_flags()
flags.DEFINE_bool("quick", False, "Fewer timed steps (a few minutes).", flag_values=FLAGS)
flags.DEFINE_bool("jit", False, "Also measure our step with XLA.", flag_values=FLAGS)
flags.DEFINE_integer("repeats", 0, "Alternate ours/reference this many times, keep the best of "
                     "each (0: 1 with --quick, 2 otherwise).", flag_values=FLAGS)
flags.DEFINE_string("only", "", f"Comma-separated parts to run, of {','.join(PARTS)} "
                    "(default: all).", flag_values=FLAGS)
flags.DEFINE_integer("threads", 0, "Cap both sides at this many threads (a loaded machine: 1 "
                     "each keeps PyTorch's OpenMP from spinning against other work; 0: each "
                     "library's default).", flag_values=FLAGS)


def check(a):
    """Refuse a bad input before anything runs (no venv, no subprocess); returns the parts."""
    for name in ("repeats", "threads"):
        if getattr(a, name) < 0:
            raise ValueError(f"--{name} must be >= 0 (0: the default), got {getattr(a, name)}")
    parts = set(a.only.split(",")) if a.only else set(PARTS)
    if parts - set(PARTS):
        raise ValueError(f"--only names unknown part(s) {sorted(parts - set(PARTS))}; "
                         f"allowed: {','.join(PARTS)}")
    if parts - {"scaling"} and not os.path.isfile(TORCH_SCRIPT):
        raise FileNotFoundError(
            f"the reference script {os.path.normpath(TORCH_SCRIPT)} is missing; the shared "
            "folder must sit next to the repository (../shared), or pass --only=scaling")
    return parts


def main(argv=None):
    """The bench's JSON lines (printed as they come, and returned).

    Args:
      argv: the flags, without the program name (default ``sys.argv[1:]``).
    """
    cli.parse(FLAGS, argv, PROG, __doc__)
    a = flag_args.args(FLAGS)
    parts = check(a)
    THREAD_ENV.clear()
    if a.threads:
        THREAD_ENV.update(thread_env(a.threads))
    repeats = a.repeats or (1 if a.quick else 2)
    bf16 = cpu_bf16()
    lines = [header()]
    fastest_step = 0.0
    fp32_steps = {}
    for width, batch in SHAPES:
        if "steps" not in parts:
            if "ceiling" in parts and (width, batch) == CEILING_SHAPE:
                fp32_steps[(width, batch)] = _fp32_steps(width, batch, a.quick, repeats)
            continue
        steps = _step_count(width, a.quick)
        shape = f"preact_resnet18_w{width}_b{batch}"
        torch_runs, our_runs = _fp32_steps(width, batch, a.quick, repeats)
        fp32_steps[(width, batch)] = (torch_runs, our_runs)
        torch_run, our_run = best(torch_runs), best(our_runs)
        fastest_step = max(fastest_step, our_run["images_per_s"])
        lines.append(emit(f"pgd10_at_step/{shape}", our_run["images_per_s"],
                          torch_run["images_per_s"], "images/s",
                          all_ours=[r["images_per_s"] for r in our_runs],
                          all_reference=[r["images_per_s"] for r in torch_runs]))
        if bf16:
            ref_bf16 = reference(width, batch, steps, autocast="bf16")
            our_bf16 = ours(width=width, batch=batch, steps=steps, precision="mixed_bfloat16")
            lines.append(emit(f"pgd10_at_step_bf16/{shape}", our_bf16["images_per_s"],
                              ref_bf16["images_per_s"], "images/s",
                              ours_vs_own_fp32=round(our_bf16["images_per_s"]
                                                     / our_run["images_per_s"], 3),
                              reference_vs_own_fp32=round(ref_bf16["images_per_s"]
                                                          / torch_run["images_per_s"], 3)))
        else:
            lines.append(emit(f"pgd10_at_step_bf16/{shape}", None, None, "images/s",
                              skipped="this CPU has neither AVX512-BF16 nor AMX-BF16"))
        if a.jit:
            jit_run = ours(width=width, batch=batch, steps=steps, jit=True)
            lines.append(emit(f"pgd10_at_step_xla/{shape}", jit_run["images_per_s"],
                              torch_run["images_per_s"], "images/s"))
        masked = ours(width=width, batch=batch, steps=steps, sparsity=0.8)
        plain = ours(width=width, batch=batch, steps=steps, plain=True)
        lines.append(emit(f"mask_overhead/{shape}", masked["step_s"], plain["step_s"],
                          "s/step", ratio=masked["step_s"] / plain["step_s"]))
        # FB+ run: the step also records dense gradients for growth; one update against it.
        fb = ours(width=width, batch=batch, steps=steps, sparsity=0.8, mask_update=True)
        lines.append(emit(f"fb_plus_mask_update_vs_step/{shape}", fb["mask_update_s"],
                          fb["step_s"], "s", ratio=fb["mask_update_s"] / fb["step_s"]))
        lines.append(emit(f"peak_rss/{shape}", min(r["peak_rss_mb"] for r in our_runs),
                          min(r["peak_rss_mb"] for r in torch_runs), "MiB"))
    if "ceiling" in parts:
        lines += ceiling_lines(fp32_steps, 20 if a.quick else 40)
    if "scaling" in parts:
        lines += _scaling_lines(a.quick, fastest_step)
    if "eval" in parts:
        lines += _eval_lines(a.quick)
    if "trained_eval" in parts:
        lines.append(trained_eval_line(a.quick))
    return lines


def _step_count(width, quick):
    # About the same wall time per shape; the small model needs more steps to beat noise.
    return (2 if quick else 5) * (2 if width < 64 else 1)


def _fp32_steps(width, batch, quick, repeats):
    """(reference runs, our runs) of the fp32 step, alternated ``repeats`` times."""
    steps = _step_count(width, quick)
    torch_runs, our_runs = [], []
    for _ in range(repeats):
        torch_runs.append(reference(width, batch, steps))
        our_runs.append(ours(width=width, batch=batch, steps=steps))
    return torch_runs, our_runs


def ceiling_lines(fp32_steps, repeats):
    """Each side's fp32 step against the sum of its own convolution op times (conv_ops, same
    run): ``fraction`` = convolutions-only time / step time, so a regression outside the
    convolutions shows as a fall at once."""
    from benchmarks import conv_ops
    lines = []
    for (width, batch), (torch_runs, our_runs) in sorted(fp32_steps.items()):
        if (width, batch) != CEILING_SHAPE:
            continue
        tf_times, torch_times = conv_ops.measure(batch, width, repeats)
        our_step = batch / best(our_runs)["images_per_s"]
        ref_step = batch / best(torch_runs)["images_per_s"]
        ours_fraction = conv_ops.ceiling_fraction(our_step, tf_times, width)
        ref_fraction = conv_ops.ceiling_fraction(ref_step, torch_times, width)
        lines.append(emit(
            f"step_vs_conv_ceiling/preact_resnet18_w{width}_b{batch}", round(ours_fraction, 3),
            round(ref_fraction, 3), "fraction", ratio=ours_fraction / ref_fraction,
            step_s=round(our_step, 3), reference_step_s=round(ref_step, 3),
            conv_ms=round(conv_ops.step_ceiling_ms(tf_times, width), 1),
            reference_conv_ms=round(conv_ops.step_ceiling_ms(torch_times, width), 1)))
    return lines


def _scaling_lines(quick, fastest_step):
    lines = []
    # Scaling: the same global batch on one device and split over 2 logical CPU devices.
    steps = 2 if quick else 4
    one = ours(width=16, batch=64, steps=steps)
    two = ours(width=16, batch=64, steps=steps, replicas=2)
    lines.append(emit("mirrored_2_logical_cpus_vs_1/preact_resnet18_w16_b64",
                      two["images_per_s"], one["images_per_s"], "images/s"))
    pipe = ours(pipeline=True, batch=128)
    lines.append(emit("input_pipeline_vs_fastest_step/cifar10_augmented_b128",
                      pipe["images_per_s"], fastest_step or None, "images/s"))
    return lines


def _eval_lines(quick):
    lines = []
    # Evaluation: our attacks and torchattacks on the same weights and images. Each image is
    # labelled with the model's clean prediction, so every one enters the attack (as the correct
    # points of a trained model do); with random labels about 9 in 10 would be skipped on both
    # sides and the line would time the clean pass. AutoAttack's later attacks then run on the
    # points APGD-CE leaves, the same ones on both sides (the robust fractions are printed).
    small, large = (16, 32) if quick else (32, 64)
    with tempfile.TemporaryDirectory() as tmp:
        for attack, images in (("pgd20", large), ("apgd_ce", large), ("autoattack", small)):
            npz = os.path.join(tmp, f"{attack}.npz")
            run = ours(width=16, batch=64, images=images, eval=attack, save=npz,
                       predicted_labels=True)
            ref = reference_eval(npz, attack, 16, 64)
            lines.append(emit(f"eval_{attack}/preact_resnet18_w16", run["images_per_s"],
                              ref["images_per_s"], "images/s", images=images,
                              labels="clean predictions",
                              robust_fraction=run["robust_fraction"],
                              reference_robust_fraction=ref["robust_fraction"]))
    return lines


def trained_eval_line(quick, width=16, batch=64, images=None, train_steps=TRAIN_STEPS,
                      extra=None):
    """AutoAttack standard on a model PGD-AT-trained inside the bench (benchmarks/trained_model.py),
    ours against torchattacks' MultiAttack on the same weights and held-out images, each labelled
    with the clean prediction; how many images each attack is given on each side, its seconds,
    and both robust fractions."""
    images = images or (8 if quick else 16)
    with tempfile.TemporaryDirectory() as tmp:
        npz = os.path.join(tmp, "trained.npz")
        run = ours(width=width, batch=batch, images=images, eval="autoattack", save=npz,
                   predicted_labels=True, train_steps=train_steps, warmup_images=WARMUP,
                   **(extra or {}))
        ref = reference_eval(npz, "autoattack", width, batch, REF_WARMUP)
    untraced = sorted(set(run["attacked"]) - set(run["warmup_attacked"]))
    extra_fields = {"warning": f"the warm-up image never reached {untraced}: their tracing is "
                               "inside our timed call"} if untraced else {}
    return emit(f"eval_autoattack_trained/preact_resnet18_w{width}", run["images_per_s"],
                ref["images_per_s"], "images/s", images=images, labels="clean predictions",
                model=(f"PGD-AT (PGD-{run['train_pgd_steps']}) {run['train_steps']} steps x "
                       f"{run['train_batch']} synthetic images"),
                train_s=run["train_s"],
                clean_accuracy_true_labels=run["clean_accuracy_true_labels"],
                attacked=run["attacked"], reference_attacked=ref["attacked"],
                attack_seconds=run["attack_seconds"],
                reference_attack_seconds=ref["attack_seconds"],
                warmup_attacked=run["warmup_attacked"], warmup_s=run["warmup_s"],
                cpu_s=run["cpu_s"], reference_cpu_s=ref["cpu_s"],
                reference_threads=ref["threads"],
                robust_fraction=run["robust_fraction"],
                reference_robust_fraction=ref["robust_fraction"],
                robust_images_differ=round(abs(run["robust_fraction"]
                                               - ref["robust_fraction"]) * images),
                **extra_fields)


def entry(argv=None):
    """``python -m benchmarks.pgd_at``: ``main`` with a bad input as one line; exit status."""
    return flag_args.entry(main, FLAGS, PROG, argv)


if __name__ == "__main__":
    sys.exit(entry())
