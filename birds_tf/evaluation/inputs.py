"""The evaluation's arguments, checked before any model is loaded or any attack runs.

Why first: a typo fails in the first second with the offending value and the fix in the message
(``launch.evaluate`` prints it alone). ``check_compatible`` is the one check that needs the
loaded model: images and labels the model cannot take are refused before an attack fails deep
inside a graph.
"""
import ast
import os

from birds_tf.attacks import _common, registry
from birds_tf.utils.workdir import Workdir

# The paper's Table A8 attacks (Appendix A3.2): its "CW" is taken as CW-L2, inferred from the
# parameters it gives (a search on c, a learning rate); PGD-20 is the main tables' attack.
DEFAULT_ATTACKS = ("pgd20", "cw_l2", "autoattack")
WHICH = ("best", "final")
SPLITS = ("test", "val", "train")


def check_attacks(attacks):
    """A tuple of registry names (a comma-separated string is accepted), duplicates dropped."""
    if isinstance(attacks, str):
        attacks = [a.strip() for a in attacks.split(",")]
    names = [a for a in (attacks or ()) if a]
    if not names:
        raise ValueError(f"No attack given; pass e.g. --attacks={','.join(DEFAULT_ATTACKS)} "
                         f"(allowed: {', '.join(registry.ATTACKS)}).")
    unknown = [a for a in names if a not in registry.ATTACKS]
    if unknown:
        raise ValueError(f"Unknown attack(s) {unknown}; allowed: {', '.join(registry.ATTACKS)}.")
    return tuple(dict.fromkeys(names))


def check_which(which):
    if which not in WHICH:
        raise ValueError(f"which must be 'best' or 'final' (the checkpoint of a workdir), got "
                         f"{which!r}.")
    return which


def check_split(split):
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}.")
    return split


def model_kind(path):
    """'workdir' (has checkpoints/*.keras) or 'saved_model' (has saved_model.pb); else an error."""
    path = os.fspath(path)
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return "saved_model"
    if Workdir(path).saved_checkpoints():
        return "workdir"
    kinds = ("a launch.train workdir (checkpoints/best.keras or final.keras) or a SavedModel "
             "folder (saved_model.pb, e.g. from launch.export)")
    if not os.path.exists(path):
        raise ValueError(f"{path!r} does not exist; pass {kinds}.")
    raise ValueError(f"{path!r} has neither checkpoints/best.keras|final.keras nor "
                     f"saved_model.pb; pass {kinds}.")


def parse_attack_options(items):
    """``["autoattack.n_iter=10", ...]`` -> ``{"autoattack": {"n_iter": 10}}``, checked against
    each attack's signature (unknown options are refused with the allowed ones listed)."""
    out = {}
    for item in items or ():
        head, sep, value = str(item).partition("=")
        name, dot, key = head.strip().partition(".")
        if not sep or not dot or not key:
            raise ValueError(f"Attack option {item!r} is not ATTACK.OPTION=VALUE, e.g. "
                             "autoattack.n_iter=10.")
        check_attacks([name])
        try:
            parsed = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            parsed = value.strip()
        out.setdefault(name, {})[key.strip()] = parsed
    for name, opts in out.items():
        registry.resolve_kwargs(name, registry.ATTACKS[name][1], 8 / 255, opts)
    return out


def input_shape_of(model):
    """The per-example input shape the model declares, or None."""
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, list):
        shape = shape[0]
    return tuple(shape[1:]) if shape else None


def check_compatible(model, x, y, what="the data"):
    """Refuse images the model cannot take, before an attack fails deep inside a graph."""
    shape = input_shape_of(model)
    if shape and len(shape) == x.ndim - 1 and any(
            s is not None and s != d for s, d in zip(shape, x.shape[1:])):
        raise ValueError(f"The model takes images of shape {shape} but {what} has "
                         f"{tuple(x.shape[1:])}; evaluate it on its own dataset.")
    logits = _common.logits_of(model, x[:2])
    n_classes = int(logits.shape[-1])
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"Labels of {what} span [{y.min()}, {y.max()}] but the model has "
                         f"{n_classes} classes.")
    return n_classes
