"""The package's metadata holds: one version, declared minimums equal to the tested pins, and a
layout the installed wheel can run (launchers import each other relatively). Reads files only."""
import ast
import os
import re
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _version():
    with open(os.path.join(ROOT, "birds_tf", "__init__.py")) as f:
        tree = ast.parse(f.read())
    (value,) = [n.value.value for n in tree.body if isinstance(n, ast.Assign)
                and any(getattr(t, "id", None) == "__version__" for t in n.targets)]
    return value


def _pins(*files):
    pins = {}
    for name in files:
        with open(os.path.join(ROOT, name)) as f:
            for line in f:
                match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", line)
                if match:
                    pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def _minimums(requirements):
    out = {}
    for req in requirements:
        match = re.match(r"^([A-Za-z0-9_.-]+)(\[[^]]*\])?\s*(.*)$", req)
        name, spec = match.group(1).lower().replace("_", "-"), match.group(3)
        low = re.search(r">=\s*([^,\s;]+)", spec)
        assert low, f"{req!r} declares no minimum version"
        out[name] = low.group(1)
    return out


def test_version_has_one_source_and_a_changelog_entry():
    project = _pyproject()
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "birds_tf.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", _version())
    with open(os.path.join(ROOT, "CHANGELOG.md")) as f:
        headings = re.findall(r"^## (\S+)", f.read(), re.M)
    # Keep a Changelog: changes not yet released gather under "Unreleased" above the newest
    # version, which must be birds_tf.__version__.
    released = [h for h in headings if h != "Unreleased"]
    assert headings.index(released[0]) <= 1 and released[0] == _version(), (
        "CHANGELOG.md's newest released entry is not birds_tf.__version__")


def test_declared_minimums_are_the_tested_pins():
    project = _pyproject()["project"]
    runtime = _pins("requirements.txt")
    assert _minimums(project["dependencies"]) == runtime
    extras = project["optional-dependencies"]
    test_pins = {k: v for k, v in _pins("requirements-test.txt").items() if k not in runtime}
    assert _minimums(extras["test"]) == test_pins
    assert _minimums(extras["animals"]) == _pins("requirements-nodeps.txt")
    assert project["requires-python"] == ">=3.11"


def test_launchers_import_each_other_relatively():
    """Installed, launch/ is birds_tf.launch: an absolute ``import launch`` would not resolve."""
    bad = []
    folder = os.path.join(ROOT, "launch")
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(folder, name)) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            modules = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                       [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                       else [])
            bad += [f"launch/{name}:{node.lineno} imports {m}" for m in modules
                    if m == "launch" or m.startswith("launch.")]
    assert not bad, bad


def test_console_scripts_name_existing_launcher_mains():
    scripts = _pyproject()["project"]["scripts"]
    for script, target in scripts.items():
        module, func = target.split(":")
        assert module.startswith("birds_tf.launch.") and script.startswith("birds-tf-")
        path = os.path.join(ROOT, "launch", module.rsplit(".", 1)[1] + ".py")
        with open(path) as f:
            tree = ast.parse(f.read())
        assert any(isinstance(n, ast.FunctionDef) and n.name == func for n in tree.body), target


def test_no_private_keras_paths():
    """``keras.src`` moves between Keras releases; birds_tf and its launchers use public Keras."""
    bad = []
    for top in ("birds_tf", "launch"):
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                if name.endswith(".py"):
                    with open(os.path.join(folder, name)) as f:
                        tree = ast.parse(f.read())
                    for node in ast.walk(tree):
                        modules = ([a.name for a in node.names] if isinstance(node, ast.Import)
                                   else [node.module or ""] if isinstance(node, ast.ImportFrom)
                                   else [])
                        bad += [f"{top}/{name}:{node.lineno} {m}" for m in modules
                                if m.startswith("keras.src") or m.startswith("tf_keras")]
    assert not bad, bad
