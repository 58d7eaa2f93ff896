"""The package's layers import only downward, without circles, and never tf_keras or tfmot.

The rule (docs/layout.md, "Layering and plug-ins"): utils < layers, models, data, attacks <
sparsity, metrics, pruning < training < experiment < launch. ``training`` (the Keras engine) never
imports ``experiment`` (gin and the workdir); the lower packages import neither; gin lives in
``experiment`` only. Checked on the source (every ``import``, lazy ones inside functions
included), so the test fails as soon as a module reaches up.
"""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "birds_tf")
LOWER = ("layers", "models", "data", "attacks", "sparsity", "metrics", "utils", "pruning")
ABOVE_LOWER = ("birds_tf.training", "birds_tf.experiment", "launch", "birds_tf.launch")
ABOVE_TRAINING = ("birds_tf.experiment", "launch", "birds_tf.launch")


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


def _sources(packages=None):
    """``(path relative to birds_tf/, absolute path)`` of every module of ``packages``."""
    for folder, _, names in os.walk(PACKAGE):
        for name in names:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, PACKAGE).replace(os.sep, "/")
            if packages is None or rel.split("/")[0] in packages:
                yield rel, path


def _under(module, prefixes):
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _violations(packages, forbidden):
    bad = []
    for rel, path in _sources(packages):
        for line, module in _imports(path):
            if _under(module, forbidden):
                bad.append(f"birds_tf/{rel}:{line} imports {module}")
    return bad


def test_lower_packages_never_import_training_experiment_or_launch():
    bad = _violations(LOWER, ABOVE_LOWER)
    assert not bad, "\n".join(bad)


def test_training_never_imports_experiment_or_launch():
    bad = _violations(("training",), ABOVE_TRAINING)
    assert not bad, "\n".join(bad)


def test_gin_lives_in_the_experiment_layer_only():
    bad = [f"birds_tf/{rel}:{line} imports {module}"
           for rel, path in _sources() if not rel.startswith("experiment/")
           for line, module in _imports(path) if module.split(".")[0] == "gin"]
    assert not bad, "\n".join(bad)


def _module_name(rel):
    parts = rel[:-len(".py")].split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["birds_tf"] + parts)


def _graph():
    """``{module: {module it imports}}`` over birds_tf (a name imported from a package counts as
    an edge to the package's ``__init__``; parents imported implicitly do not count)."""
    modules = {_module_name(rel): path for rel, path in _sources()}
    graph = {}
    for name, path in modules.items():
        edges = set()
        for _, module in _imports(path):
            target = module
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and target.startswith("birds_tf"):
                edges.add(target)
        graph[name] = edges
    # ``from birds_tf.x import y`` yields both birds_tf.x and birds_tf.x.y; keep the precise one.
    for name, edges in graph.items():
        graph[name] = {e for e in edges
                       if not any(o.startswith(e + ".") for o in edges) or e == "birds_tf"}
    return graph


def _cycles(graph):
    """One representative cycle per strongly connected component of size > 1 (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles_between_modules():
    assert _cycles(_graph()) == []


def test_cycle_finder_finds_a_planted_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_package_never_imports_tf_keras_or_tfmot():
    bad = []
    for rel, path in _sources():
        for line, module in _imports(path):
            if module.split(".")[0] in ("tf_keras", "tensorflow_model_optimization"):
                bad.append(f"birds_tf/{rel}:{line} imports {module}")
    assert not bad, "\n".join(bad)
