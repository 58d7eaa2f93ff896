"""birds-tf as a user installs it: build the wheel, install it into a fresh virtual environment
outside the checkout, and from another directory import it, run the README's library snippets
and a launcher on the embedded digits.

One wheel and one environment per test module (the install is most of the time). The fresh
environment gets the wheel and its declared dependencies from the package registry, constrained
to the versions of the environment running the tests (``pip freeze``), so pip takes the files it
already holds and the installed versions are the ones the rest of the suite has run; ``--no-compile``
skips writing bytecode for TensorFlow's thousands of modules (Python compiles what it imports).
Nothing of the checkout is on the fresh environment's path.
"""
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ("pyproject.toml", "setup.py", "README.md", "birds_tf", "launch", "gin")
# What a wheel must not carry: tests, runs, checkpoints, models, data.
FORBIDDEN = re.compile(r"(^|/)(tests?|runs|checkpoints|benchmarks|saved_model[^/]*)/|"
                       r"\.(keras|h5|npz|pb|ckpt|index)$|(^|/)__pycache__/|\.pyc$")


def _run(cmd, cwd, env=None, timeout=600):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, (f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n"
                                  f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout


def _user_env(venv):
    """The environment of a user who activated ``venv``: nothing of the checkout on the path."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSAFEPATH")}
    env["PATH"] = os.path.join(venv, "bin") + os.pathsep + env.get("PATH", "")
    env["VIRTUAL_ENV"] = venv
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(wheel, venv python, a user's directory outside the checkout, its environment, the
    launcher's running process)``."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"  # a copy: the build writes build/ and *.egg-info next to its sources
    src.mkdir()
    for name in SOURCES:
        path = os.path.join(ROOT, name)
        if os.path.isdir(path):
            shutil.copytree(path, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(path, src / name)
    dist = base / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir",
          str(dist), str(src)], cwd=base)
    (wheel,) = dist.glob("birds_tf-*.whl")
    frozen = _run([sys.executable, "-m", "pip", "freeze"], cwd=base)
    pins = [line for line in frozen.splitlines()
            if re.match(r"^[A-Za-z0-9_.-]+==", line)
            and not re.match(r"^birds[-_]tf==", line, re.I)]
    constraints = base / "constraints.txt"
    constraints.write_text("\n".join(pins) + "\n")
    venv = str(base / "venv")
    _run([sys.executable, "-m", "venv", venv], cwd=base)
    python = os.path.join(venv, "bin", "python")
    _run([python, "-m", "pip", "install", "--quiet", "--no-compile", "-c", str(constraints),
          str(wheel)], cwd=base, env=_user_env(venv))
    user = base / "user"
    user.mkdir()
    env = _user_env(venv)
    # The launcher trains while the snippets run (two processes on two cores); its test waits.
    log = base / "launcher.log"  # a file, not a pipe: nothing blocks on a full buffer
    with open(log, "w") as out:
        launcher = subprocess.Popen(_launcher_command(python), cwd=user, env=env,
                                    stdout=out, stderr=subprocess.STDOUT)
    yield str(wheel), python, str(user), env, (launcher, log)
    if launcher.poll() is None:
        launcher.kill()
        launcher.wait()
    shutil.rmtree(venv, ignore_errors=True)  # 2.5 GB; pytest keeps the last 3 sessions' tmp


def _launcher_command(python):
    """The console script with bare config names: fb_plus_resnet18.gin includes
    'gin/table1/fb_resnet18.gin' and so on, which must resolve inside the installed package."""
    bindings = ["train_eval.epochs = 1", "train_eval.train_steps = 1", "train_eval.eval_steps = 1",
                "train_eval.max_train = 64", "train_eval.max_eval = 32",
                "train_eval.milestones = ()"]
    script = os.path.join(os.path.dirname(python), "birds-tf-train")
    return ([script, "--gin_file=fb_plus_resnet18.gin", "--gin_file=gin/quickstart/smoke.gin",
             "--workdir=run"] + [f"--gin_bindings={b}" for b in bindings])


def test_wheel_holds_the_package_configs_and_launchers_only(installed):
    wheel = installed[0]
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"birds_tf", os.path.basename(wheel).split("-py3")[0] + ".dist-info"}, tops
    assert not [n for n in names if FORBIDDEN.search(n)]
    prefix = "birds_tf/configs/gin/"
    gins = sorted(n[len(prefix):] for n in names if n.startswith(prefix))
    source = os.path.join(ROOT, "gin")
    assert gins == sorted(os.path.relpath(os.path.join(folder, n), source)
                          for folder, _, files in os.walk(source) for n in files
                          if n.endswith(".gin"))
    launchers = {n for n in names if n.startswith("birds_tf/launch/")}
    assert {f"birds_tf/launch/{n}" for n in os.listdir(os.path.join(ROOT, "launch"))
            if n.endswith(".py")} == launchers
    assert "birds_tf/metrics/paper_tables.csv" in names
    size = os.path.getsize(wheel)
    print(f"\n{os.path.basename(wheel)}: {size / 1e3:.0f} kB")
    assert size < 1_000_000


# Run by the fresh environment's Python in the user's directory: the package must come from
# the environment, the README's two library snippets must run as printed (each in a namespace
# of its own), and every public name must import.
USER_SCRIPT = r'''
import importlib, json, os, sys
import birds_tf
from importlib import metadata
assert os.path.realpath(birds_tf.__file__).startswith(os.path.realpath(sys.prefix)), birds_tf.__file__
assert metadata.version("birds-tf") == birds_tf.__version__
for block in json.loads(sys.argv[1]):
    exec(compile(block, "README.md", "exec"), {"__name__": "__main__"})
bad = []
for name in json.loads(sys.argv[2]):
    module = importlib.import_module(name)
    for attr in module.__all__:
        obj = getattr(module, attr)
        where = getattr(obj, "__module__", None) or ""
        if any(part.startswith("_") for part in where.split(".")):
            bad.append(f"{name}.{attr} lives in {where}")
assert not bad, bad
print("public modules", len(json.loads(sys.argv[2])))
from birds_tf.experiment import configs
try:
    configs.resolve_config("fb_plus_resnet81.gin")
except FileNotFoundError as e:
    print("missing:", e)
'''


def _readme_block(marker):
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    match = re.search(rf"<!-- snippet: {marker}.*?-->\s*```python\n(.*?)```", text, re.S)
    assert match, f"the README lost its {marker} snippet"
    return match.group(1)


def test_installed_wheel_runs_the_readme_snippets_from_outside_the_checkout(installed):
    import json

    from tests.test_public_api import public_modules
    _, python, user, env, _ = installed
    blocks = [_readme_block("coming-from-tfmot"), _readme_block("byo-model")]
    out = _run([python, "-c", USER_SCRIPT, json.dumps(blocks), json.dumps(public_modules())],
               cwd=user, env=env)
    sparsity = float(re.search(r"^sparsity ([0-9.]+)", out, re.M).group(1))
    assert sparsity == pytest.approx(0.8, abs=0.01)  # the tfmot snippet's final_sparsity
    density = float(re.search(r"^density ([0-9.]+)", out, re.M).group(1))
    assert 0.15 < density < 0.3  # the byo-model snippet: FB+ from 0.2
    assert "public modules" in out
    # A config name that is nowhere says where configs are looked up: here and in the package.
    missing = re.search(r"^missing: (.*)$", out, re.M).group(1)
    assert os.path.realpath(user) in missing or user in missing
    assert re.search(r"site-packages/birds_tf/configs/gin\b", missing)
    assert "Did you mean gin/table1/fb_plus_resnet18.gin" in missing


def test_installed_launcher_trains_on_digits_with_packaged_configs(installed):
    _, _, user, _, (launcher, log) = installed
    launcher.wait(timeout=600)
    out = log.read_text()
    assert launcher.returncode == 0, out[-4000:]
    assert "results: method=fb_plus" in out and "dataset=digits" in out
    assert os.path.isfile(os.path.join(user, "run", "results.json"))
