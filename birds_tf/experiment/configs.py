"""Where gin configs are found, so a launcher runs from any directory.

A config path is looked up as given (relative to the current directory), then in birds-tf's own
configs: ``birds_tf/configs/gin/`` in an installed package, the checkout's ``gin/`` otherwise.
The configs are grouped in folders by what they reproduce (``gin/table1/``, ``gin/table_a11/``,
``gin/figure4/``, ``gin/offline/``, ...; docs/reproduction.md lists them) and every file name is
unique across the folders, so ``--gin_file=gin/table1/fb_plus_resnet18.gin`` (the form the
README, the gin files' ``include`` lines and ``paper_tables.csv`` use), the bare
``--gin_file=fb_plus_resnet18.gin`` and the flat ``gin/fb_plus_resnet18.gin`` of the layout before
the grouping all resolve to the same file. The folder above ``gin/`` is added to gin's search
path, so ``include 'gin/table1/x.gin'`` lines resolve the same way (current directory first).
"""
import difflib
import os
import re

import gin

__all__ = ["ConfigNotFoundError", "config_root", "configs_dir", "find_config", "missing_include",
           "moved_config", "resolve_config"]

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_searched = []
# Folders of the flat layout before the configs were grouped by paper table: a path there
# (``gin/x.gin``, ``gin/offline_search/x.gin``) names the config of the same file name.
_FLAT_FOLDERS = ("gin", os.path.join("gin", "offline_search"))


class ConfigNotFoundError(FileNotFoundError):
    """A gin config path that is neither a file nor one of birds-tf's configs."""


def _config_files(folder):
    """Every ``.gin`` file under ``folder``, as paths relative to it, in a fixed order."""
    found = []
    for parent, children, files in os.walk(folder):
        children.sort()
        found += [os.path.relpath(os.path.join(parent, n), folder)
                  for n in sorted(files) if n.endswith(".gin")]
    return found


def config_root():
    """The folder holding birds-tf's ``gin/`` configs folder (``birds_tf/configs`` when
    installed, the checkout's root otherwise), or None if neither exists."""
    installed = os.path.join(_PACKAGE, "configs")
    checkout = os.path.dirname(_PACKAGE)
    for root in (installed, checkout):
        # The checkout's parent of birds_tf/ is site-packages when installed, whose gin/ is
        # gin-config's code: only a folder that holds .gin files counts.
        folder = os.path.join(root, "gin")
        if os.path.isdir(folder) and _config_files(folder):
            return root
    return None


def configs_dir():
    """birds-tf's own configs folder, or None (a source tree without ``gin/``)."""
    root = config_root()
    return None if root is None else os.path.join(root, "gin")


def moved_config(path):
    """The config ``gin/<folder>/<name>`` that a bare ``<name>`` or a path of the flat layout
    (``gin/<name>``, ``gin/offline_search/<name>``) names, or None.

    Args:
      path: a gin file path as a user or an ``include`` line gives it.
    """
    folder = configs_dir()
    if folder is None or os.path.isabs(path):
        return None
    parent, name = os.path.split(os.path.normpath(path))
    if parent and parent not in _FLAT_FOLDERS:
        return None
    matches = [p for p in _config_files(folder) if os.path.basename(p) == name]
    if len(matches) != 1:
        return None
    return "/".join(["gin"] + matches[0].split(os.sep))


def find_config(path):
    """The file ``path`` names: as given if it exists, else birds-tf's config of that path
    (``gin/table1/x.gin``) or that file name (``x.gin``, ``gin/x.gin``); None if none exists."""
    if os.path.isfile(path):
        return path
    root = config_root()
    if root is None or os.path.isabs(path):
        return None
    for candidate in (os.path.join(root, path), os.path.join(root, "gin", path)):
        if os.path.isfile(candidate):
            return candidate
    moved = moved_config(path)
    return None if moved is None else os.path.join(root, moved)


def resolve_config(path):
    """``find_config`` or a ``ConfigNotFoundError`` saying where configs are looked up; also
    puts birds-tf's configs on gin's search path for ``include`` lines.

    Args:
      path: a gin file as given on the command line.
    """
    root = config_root()
    if root is not None and root not in _searched:
        gin.add_config_file_search_path(root)
        _searched.append(root)
    found = find_config(path)
    if found is not None:
        return found
    folder = configs_dir()
    message = (f"Gin file {path!r} not found. Configs are looked up as given (relative to the "
               f"current directory {os.getcwd()}), then in birds-tf's configs folder "
               f"{folder or '(none: this birds_tf has no gin/ folder)'}")
    if folder is not None:
        paths = ["/".join(["gin"] + p.split(os.sep)) for p in _config_files(folder)]
        by_name = {os.path.basename(p): p for p in paths}
        close = difflib.get_close_matches(os.path.basename(path), sorted(by_name), n=3)
        message += (", by name (e.g. --gin_file=fb_plus_resnet18.gin or "
                    "--gin_file=gin/table1/fb_plus_resnet18.gin)")
        if close:
            message += f". Did you mean {', '.join(by_name[n] for n in close)}?"
        else:
            message += f". It has {len(paths)} configs, e.g. {', '.join(paths[:3])}."
    raise ConfigNotFoundError(message)


_INCLUDE = re.compile(r"""^\s*include\s+(['"])(.+?)\1""", re.M)


def missing_include(files):
    """A ``ConfigNotFoundError`` for the first ``include`` line, in ``files`` or in what they
    include, that names no file (gin itself says only ``OSError()``), or None.

    gin looks an include up as given, then under each search path; for a path of the flat layout
    before the grouping the error names the config's new path.

    Args:
      files: resolved gin file paths, as ``resolve_config`` returns them.
    """
    root = config_root()
    prefixes = [""] + ([root] if root is not None else [])
    seen, todo = set(), list(files)
    while todo:
        path = todo.pop(0)
        if path in seen or not os.path.isfile(path):
            continue
        seen.add(path)
        with open(path) as f:
            text = f.read()
        for match in _INCLUDE.finditer(text):
            name = match.group(2)
            found = [os.path.join(p, name) for p in prefixes
                     if os.path.isfile(os.path.join(p, name))]
            if found:
                todo.append(found[0])
                continue
            moved = moved_config(name)
            hint = (f"birds-tf's configs are grouped by paper table now: write include "
                    f"'{moved}'" if moved is not None else
                    f"looked up as given (current directory {os.getcwd()}) and under "
                    f"{root or '(no configs folder)'}")
            return ConfigNotFoundError(f"{path}: include '{name}' names no gin file; {hint}.")
    return None
