"""The public API is what docs/layout.md, "Public API", lists: each of those modules says what
it exports (``__all__``), every exported name imports, and nothing public lives under a private
(``_``) module path. ``tests/test_wheel.py`` runs the same import check on the installed wheel."""
import ast
import importlib
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def public_modules():
    """The modules docs/layout.md's public-API list names (the ``birds_tf...`` of each bullet)."""
    with open(os.path.join(ROOT, "docs", "layout.md")) as f:
        text = f.read()
    match = re.search(r"<!-- public-api.*?-->\n(.*?)(?:\n\n|\n?\Z)", text, re.S)
    assert match, "docs/layout.md lost its public-API list"
    names = re.findall(r"^- `(birds_tf[a-z_.]*)`", match.group(1), re.M)
    assert names and len(names) == len(set(names))
    return names


def _private(module_name):
    return any(part.startswith("_") for part in module_name.split("."))


@pytest.mark.parametrize("name", public_modules())
def test_public_module_exports_importable_names_from_public_paths(name):
    assert not _private(name)
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(exported) == len(set(exported)), name
    for attr in exported:
        obj = getattr(module, attr)  # lazy names load here
        where = getattr(obj, "__module__", None) or ""
        assert not _private(where), f"{name}.{attr} lives in the private module {where}"
        if where.startswith("birds_tf") and hasattr(obj, "__module__"):
            assert importlib.import_module(where) is not None


def test_every_package_with_a_public_face_is_listed():
    """A package's ``__init__`` with ``__all__`` is public; the README must list it."""
    listed = set(public_modules())
    found = set()
    for folder, _, files in os.walk(os.path.join(ROOT, "birds_tf")):
        for file in files:
            if not file.endswith(".py"):
                continue
            path = os.path.join(folder, file)
            rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
            module = rel[:-len(".__init__")] if rel.endswith(".__init__") else rel
            with open(path) as f:
                tree = ast.parse(f.read())
            has_all = any(isinstance(n, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets)
                for n in tree.body)
            if has_all and file == "__init__.py":
                found.add(module)
            if _private(module) and file != "__init__.py":
                assert not has_all, f"{module} is private but declares __all__"
    assert found <= listed, f"packages with __all__ missing from the README list: {found - listed}"


ALLOWED = {"birds_tf.attacks": ("birds_tf.evaluation",)}


def test_private_modules_are_used_inside_their_package_only():
    """``birds_tf.attacks._common`` (the attacks' shared plumbing: argument checks, the compiled
    function cache, per-batch seeds) is the one private module; only the attacks and the robust
    evaluation built on them import it, never the launchers or other packages (tests may)."""
    offenders = []
    for top in ("birds_tf", "launch"):
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            for file in files:
                if not file.endswith(".py"):
                    continue
                path = os.path.join(folder, file)
                package = os.path.relpath(folder, ROOT).replace(os.sep, ".")
                with open(path) as f:
                    tree = ast.parse(f.read())
                for node in ast.walk(tree):
                    if isinstance(node, ast.ImportFrom) and node.module:
                        targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                    elif isinstance(node, ast.Import):
                        targets = [a.name for a in node.names]
                    else:
                        continue
                    for target in targets:
                        parts = target.split(".")
                        for i, part in enumerate(parts):
                            if part.startswith("_") and not part.startswith("__"):
                                owner = ".".join(parts[:i])
                                if owner != package and package not in ALLOWED.get(owner, ()):
                                    offenders.append(f"{path}: {target}")
    assert not offenders, offenders
