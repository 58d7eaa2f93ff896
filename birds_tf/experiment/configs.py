"""Where gin configs are found, so a launcher runs from any directory.

A config path is looked up as given (relative to the current directory), then in birds-tf's own
configs: ``birds_tf/configs/gin/`` in an installed package, the checkout's ``gin/`` otherwise.
``--gin_file=gin/fb_plus_resnet18.gin`` (the form the README, the gin files' ``include`` lines
and ``paper_tables.csv`` use) and the bare ``--gin_file=fb_plus_resnet18.gin`` both resolve
there. The folder above ``gin/`` is added to gin's search path, so ``include 'gin/x.gin'`` lines
resolve the same way (current directory first).
"""
import difflib
import os

import gin

__all__ = ["ConfigNotFoundError", "config_root", "configs_dir", "find_config", "resolve_config"]

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_searched = []


class ConfigNotFoundError(FileNotFoundError):
    """A gin config path that is neither a file nor one of birds-tf's configs."""


def config_root():
    """The folder holding birds-tf's ``gin/`` configs folder (``birds_tf/configs`` when
    installed, the checkout's root otherwise), or None if neither exists."""
    installed = os.path.join(_PACKAGE, "configs")
    checkout = os.path.dirname(_PACKAGE)
    for root in (installed, checkout):
        # The checkout's parent of birds_tf/ is site-packages when installed, whose gin/ is
        # gin-config's code: only a folder that holds .gin files counts.
        folder = os.path.join(root, "gin")
        if os.path.isdir(folder) and any(n.endswith(".gin") for n in os.listdir(folder)):
            return root
    return None


def configs_dir():
    """birds-tf's own configs folder, or None (a source tree without ``gin/``)."""
    root = config_root()
    return None if root is None else os.path.join(root, "gin")


def find_config(path):
    """The file ``path`` names: as given if it exists, else birds-tf's config of that name
    (``gin/x.gin`` or ``x.gin``); None if neither exists."""
    if os.path.isfile(path):
        return path
    root = config_root()
    if root is None or os.path.isabs(path):
        return None
    for candidate in (os.path.join(root, path), os.path.join(root, "gin", path)):
        if os.path.isfile(candidate):
            return candidate
    return None


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
        names = sorted(n for n in os.listdir(folder) if n.endswith(".gin"))
        close = difflib.get_close_matches(os.path.basename(path), names, n=3)
        message += (f", by name (e.g. --gin_file=fb_plus_resnet18.gin or "
                    f"--gin_file=gin/fb_plus_resnet18.gin)")
        if close:
            message += f". Did you mean {', '.join(close)}?"
        else:
            message += f". It has {len(names)} configs, e.g. {', '.join(names[:3])}."
    raise ConfigNotFoundError(message)
