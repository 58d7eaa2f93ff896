"""The package's layers import only downward, without circles, and never tf_keras or tfmot.

The rule (docs/layout.md, "Layering and plug-ins"): each package has a rank (``RANKS``, utils at
the bottom) and a module imports its own package and packages of lower rank only. Checked on the
source, so the test fails as soon as a module reaches up; an import is every ``import`` (lazy ones
inside functions included) and also the ones Python's syntax hides: ``importlib.import_module``
of a literal name (or of the literal names a function loops over), a package's lazy table
(``_LAZY``, PEP 562), and ``import birds_tf`` followed by ``birds_tf.x.y``, resolved through the
top-level lazy table (``birds_tf.AdversarialModel`` is an import of ``birds_tf.training``).
``birds_tf/__init__.py`` is the public face above every package; any other module naming it
(``birds_tf.register_keras_objects()``) reaches the whole house and counts as upward.
"""
import ast
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "birds_tf")
TOP = "birds_tf"
# Each package of birds_tf/ (flops.py counts as one) and its rank; imports go to a lower rank.
RANKS = {
    "utils": 0,
    "data": 1, "layers": 1,
    "models": 2, "attacks": 2,
    "sparsity": 3, "metrics": 3,
    "pruning": 4, "flops": 4, "export": 4,
    "training": 5,
    "experiment": 6,
    "evaluation": 7, "plots": 7,
    "launch": 8,  # the launchers (birds_tf.launch in the wheel)
}
_MODULE_NAME = re.compile(r"^birds_tf(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _module_name(rel):
    parts = rel[:-len(".py")].split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([TOP] + parts)


def _sources(package=PACKAGE, packages=None):
    """``(path relative to birds_tf/, absolute path)`` of every module of ``packages``."""
    for folder, _, names in sorted(os.walk(package)):
        for name in sorted(names):
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, package).replace(os.sep, "/")
            if packages is None or _package_of(_module_name(rel)) in packages:
                yield rel, path


def _package_of(module):
    """``"training"`` for ``birds_tf.training.x``, ``"flops"`` for ``birds_tf.flops``, None for
    the top-level package itself."""
    parts = module.split(".")
    if parts[0] == "launch":
        return "launch"
    return parts[1] if parts[0] == TOP and len(parts) > 1 else None


def _parse(path):
    with open(path) as f:
        return ast.parse(f.read(), path)


def _lazy_table(tree):
    """``{name: module}`` of a module-level ``_LAZY = {name: (module, attribute)}`` dict."""
    table = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_LAZY"
                                                 for t in node.targets)
                and isinstance(node.value, ast.Dict)):
            for key, value in zip(node.value.keys, node.value.values):
                if (isinstance(key, ast.Constant) and isinstance(value, ast.Tuple) and value.elts
                        and isinstance(value.elts[0], ast.Constant)):
                    table[key.value] = value.elts[0].value
    return table


def _is_import_module(call):
    f = call.func
    return ((isinstance(f, ast.Attribute) and f.attr == "import_module")
            or (isinstance(f, ast.Name) and f.id in ("import_module", "__import__")))


def _chain(node):
    """``["birds_tf", "training", "x"]`` for the expression ``birds_tf.training.x``, else None."""
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id] + names[::-1]
    return None


class _Resolver:
    """Turns a dotted name reached from the top-level package into the module it loads."""

    def __init__(self, package):
        self.modules = {_module_name(rel) for rel, _ in _sources(package)}
        init = os.path.join(package, "__init__.py")
        self.lazy = _lazy_table(_parse(init)) if os.path.exists(init) else {}

    def resolve(self, dotted):
        parts = dotted.split(".")
        for n in range(len(parts), 0, -1):
            prefix = ".".join(parts[:n])
            if prefix in self.modules and prefix != TOP:
                return prefix
        if len(parts) > 1 and parts[1] in self.lazy:
            return self.lazy[parts[1]]
        return TOP


def _imports(path, resolver):
    """``(line, module)`` for every import of the file at ``path``, the hidden ones included."""
    tree = _parse(path)
    bound = set()  # local names bound to the top-level package by ``import birds_tf``
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == TOP:
                    bound.add(alias.asname or TOP)  # what it loads shows where it is used
                    continue
                if alias.name.startswith(TOP + ".") and not alias.asname:
                    bound.add(TOP)
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if node.module == TOP:
                for alias in node.names:
                    yield node.lineno, resolver.resolve(f"{TOP}.{alias.name}")
                continue
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Call) and _is_import_module(node) and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                yield node.lineno, arg.value
    # importlib.import_module(name) of a computed name: the literal module names the function
    # holds (``for name in ("birds_tf.x", ...): import_module(name)``).
    for func in ast.walk(tree):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if not any(isinstance(n, ast.Call) and _is_import_module(n) and n.args
                   and not isinstance(n.args[0], ast.Constant) for n in ast.walk(func)):
            continue
        for n in ast.walk(func):
            if (isinstance(n, ast.Constant) and isinstance(n.value, str)
                    and _MODULE_NAME.match(n.value)):
                yield n.lineno, n.value
    for module in _lazy_table(tree).values():
        yield 1, module
    # ``import birds_tf`` then ``birds_tf.x.y``: the module that ``x.y`` loads.
    if bound:
        inner = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                inner.add(id(node.value))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and id(node) not in inner:
                chain = _chain(node)
                if chain and chain[0] in bound:
                    yield node.lineno, resolver.resolve(".".join([TOP] + chain[1:]))
            elif (isinstance(node, ast.Name) and node.id in bound and id(node) not in inner
                  and isinstance(node.ctx, ast.Load)):
                yield node.lineno, TOP


def _graph(package=PACKAGE):
    """``{module: {module it imports}}`` over birds_tf (a name imported from a package counts as
    an edge to the package's ``__init__``; parents imported implicitly do not count)."""
    resolver = _Resolver(package)
    modules = {_module_name(rel): path for rel, path in _sources(package)}
    graph = {}
    for name, path in modules.items():
        edges = set()
        for _, module in _imports(path, resolver):
            target = module
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and target.startswith(TOP):
                edges.add(target)
        graph[name] = edges
    # ``from birds_tf.x import y`` yields both birds_tf.x and birds_tf.x.y; keep the precise one.
    for name, edges in graph.items():
        graph[name] = {e for e in edges
                       if not any(o.startswith(e + ".") for o in edges) or e == TOP}
    return graph


def _upward(package=PACKAGE):
    """``"birds_tf/x.py:line imports y (rank a -> b)"`` for every import that is not downward."""
    resolver = _Resolver(package)
    modules = {_module_name(rel) for rel, _ in _sources(package)}
    bad, seen = [], set()
    for rel, path in _sources(package):
        name = _module_name(rel)
        own = _package_of(name)
        if own is None:
            continue  # the top-level package: the public face over every layer
        for line, module in _imports(path, resolver):
            target = module
            while target and target not in modules and _package_of(target) != "launch":
                target = target.rpartition(".")[0]
            if not target or not (target.startswith(TOP) or target.startswith("launch")):
                continue
            if (rel, line, target) in seen:
                continue  # ``from x import y`` names x and x.y
            seen.add((rel, line, target))
            where = f"birds_tf/{rel}:{line} imports {module}"
            if target == TOP:
                bad.append(f"{where}: the top-level package (its lazy names reach every layer); "
                           "import the module that holds the name")
                continue
            theirs = _package_of(target)
            if theirs != own and RANKS.get(theirs, 99) >= RANKS.get(own, -1):
                bad.append(f"{where}: {own} (rank {RANKS.get(own)}) may not import {theirs} "
                           f"(rank {RANKS.get(theirs)})")
    return bad


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


def test_every_package_is_ranked():
    packages = {_package_of(_module_name(rel)) for rel, _ in _sources()} - {None}
    assert packages <= set(RANKS), f"rank these packages in RANKS: {packages - set(RANKS)}"


def test_packages_import_only_downward():
    bad = _upward()
    assert not bad, "\n".join(bad)


def test_no_import_circles_between_modules():
    assert _cycles(_graph()) == []


def _plant(root, files):
    for rel, text in files.items():
        path = os.path.join(root, "birds_tf", rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    return os.path.join(root, "birds_tf")


_PLANTED_HOUSE = {
    "__init__.py": ('import importlib\n_LAZY = {"AdversarialModel": '
                    '("birds_tf.training.adversarial", "AdversarialModel"),\n'
                    '         "training": ("birds_tf.training", None)}\n'
                    'def register_keras_objects():\n'
                    '    for m in ("birds_tf.layers", "birds_tf.training.adversarial"):\n'
                    '        importlib.import_module(m)\n'),
    "utils/__init__.py": "",
    "layers/__init__.py": "",
    "data/__init__.py": "",
    "training/__init__.py": "",
    "training/adversarial.py": "from birds_tf import layers\nAdversarialModel = object\n",
}


def test_checker_fails_on_planted_hidden_upward_imports(tmp_path):
    package = _plant(str(tmp_path), {**_PLANTED_HOUSE,
        "utils/clean.py": "import os\nfrom birds_tf.utils import workdir_names\n",
        "utils/workdir_names.py": "NAMES = ('results.json',)\n",
        "utils/via_static.py": "def f():\n    from birds_tf.data import x\n",
        "utils/via_top.py": ("def f():\n    import birds_tf\n"
                             "    birds_tf.register_keras_objects()\n"),
        "utils/via_lazy.py": "import birds_tf\nx = birds_tf.AdversarialModel\n",
        "utils/via_attr.py": ("import birds_tf\n"
                              "y = birds_tf.training.adversarial.AdversarialModel\n"),
        "layers/via_importlib.py": ('import importlib\n'
                                    'm = importlib.import_module("birds_tf.data")\n'),
        "data/via_from.py": "from birds_tf import AdversarialModel\n",
    })
    bad = sorted(b.split(": ", 1)[0] for b in _upward(package))
    assert bad == [
        "birds_tf/data/via_from.py:1 imports birds_tf.training.adversarial",
        "birds_tf/layers/via_importlib.py:2 imports birds_tf.data",
        "birds_tf/utils/via_attr.py:2 imports birds_tf.training.adversarial",
        "birds_tf/utils/via_lazy.py:2 imports birds_tf.training.adversarial",
        "birds_tf/utils/via_static.py:2 imports birds_tf.data",
        "birds_tf/utils/via_top.py:3 imports birds_tf",
    ]
    # Downward and same-package imports pass: the planted house alone is clean.
    assert _upward(_plant(str(tmp_path / "clean"), _PLANTED_HOUSE)) == []


def test_checker_finds_a_circle_closed_by_importlib(tmp_path):
    package = _plant(str(tmp_path), {**_PLANTED_HOUSE,
        "data/a.py": ('import importlib\ndef f():\n'
                      '    return importlib.import_module("birds_tf.data.b")\n'),
        "data/b.py": "from birds_tf.data import a\n",
    })
    assert _cycles(_graph(package)) == [["birds_tf.data.a", "birds_tf.data.b"]]
    # The top-level lazy table reaches training, which imports layers: an edge, not a circle.
    assert "birds_tf.training.adversarial" in _graph(package)["birds_tf"]
    assert _cycles(_graph(_plant(str(tmp_path / "clean"), _PLANTED_HOUSE))) == []


def test_cycle_finder_finds_a_planted_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_gin_lives_in_the_experiment_layer_only():
    resolver = _Resolver(PACKAGE)
    bad = [f"birds_tf/{rel}:{line} imports {module}"
           for rel, path in _sources() if not rel.startswith("experiment/")
           for line, module in _imports(path, resolver) if module.split(".")[0] == "gin"]
    assert not bad, "\n".join(bad)


def test_package_never_imports_tf_keras_or_tfmot():
    resolver = _Resolver(PACKAGE)
    bad = []
    for rel, path in _sources():
        for line, module in _imports(path, resolver):
            if module.split(".")[0] in ("tf_keras", "tensorflow_model_optimization"):
                bad.append(f"birds_tf/{rel}:{line} imports {module}")
    assert not bad, "\n".join(bad)
