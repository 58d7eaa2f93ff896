"""The package's layers import only downward, and never tf_keras or tfmot (project rules).

Checked on the source (every ``import``, lazy ones inside functions included), so the test fails
as soon as a lower package reaches up into ``birds_tf.training`` or ``launch``.
"""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOWER = ("layers", "models", "data", "attacks", "sparsity", "metrics", "utils", "pruning")
# Known exception: ``utils.workdir.config`` builds a ``training.experiment.Config`` from a
# workdir's gin file (used by plots and evaluation, which sit above training).
ALLOWED = {("utils/workdir.py", "birds_tf.training.experiment")}


def _imports(path):
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def _sources(packages):
    for package in packages:
        base = os.path.join(ROOT, "birds_tf", package)
        for folder, _, names in os.walk(base):
            for name in names:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    yield os.path.relpath(path, os.path.join(ROOT, "birds_tf")), path


def test_lower_packages_never_import_training_or_launch():
    bad = []
    for rel, path in _sources(LOWER):
        rel = rel.replace(os.sep, "/")
        for line, module in _imports(path):
            up = module == "birds_tf.training" or module.startswith("birds_tf.training.") or \
                module == "launch" or module.startswith("launch.")
            if up and not any(rel == r and module.startswith(m) for r, m in ALLOWED):
                bad.append(f"birds_tf/{rel}:{line} imports {module}")
    assert not bad, "\n".join(bad)


def test_package_never_imports_tf_keras_or_tfmot():
    bad = []
    for folder, _, names in os.walk(os.path.join(ROOT, "birds_tf")):
        for name in names:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            for line, module in _imports(path):
                if module.split(".")[0] in ("tf_keras", "tensorflow_model_optimization"):
                    bad.append(f"{os.path.relpath(path, ROOT)}:{line} imports {module}")
    assert not bad, "\n".join(bad)
