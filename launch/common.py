"""What the launchers share: gin parsing, strategies, and the workdir guard."""
import os
import shutil
import sys
import time
import tokenize

import gin

from birds_tf.utils import lock
from birds_tf.utils.workdir import Workdir

STRATEGIES = ("default", "mirrored", "multi_worker")
CONFIG_CHANGES = Workdir.CONFIG_CHANGES_JSON


def import_configurables():
    """Import every module that defines gin configurables, so bindings to them resolve."""
    import birds_tf.experiment.configurables  # noqa: F401


def check_gin_files(files):
    """Every gin file is found (as given, then among birds-tf's own configs); returns their paths.
    Launchers call it before TensorFlow starts, so a typo costs none of its start-up."""
    from birds_tf.experiment.configs import resolve_config
    return [resolve_config(path) for path in files]


def parse_gin(files, bindings):
    """Parse configs and bindings; unknown names, missing files and bad syntax fail here, as a
    ValueError or FileNotFoundError naming the file or binding, before any work."""
    import_configurables()
    files = check_gin_files(files)
    try:
        gin.parse_config_files_and_bindings(files, bindings, finalize_config=False)
    except SyntaxError as e:
        where = f"gin file {e.filename!r}" if e.filename else "--gin_bindings"
        raise ValueError(f"Gin syntax error in {where}, line {e.lineno}: {e.msg} "
                         f"({(e.text or '').strip()!r}).") from e
    except tokenize.TokenError as e:
        raise ValueError(f"Gin syntax error in --gin_file or --gin_bindings: {e.args[0]} (an "
                         "unclosed bracket or quote).") from e
    except OSError as e:  # an include line naming no file: gin raises a bare OSError()
        from birds_tf.experiment.configs import missing_include
        missing = missing_include(files)
        if missing is None:
            raise
        raise missing from e
    return gin.config_str()


def make_strategy(name):
    import tensorflow as tf
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy=multi_worker needs the TF_CONFIG environment variable "
                             "(cluster and task); see docs/speed.md, 'Several GPUs and hosts'.")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Unknown strategy {name!r}; allowed: {STRATEGIES}.")


def claim_workdir(workdir, config_text, overwrite=False, resume_changed=False):
    """Record the config in ``workdir/config.gin``; refuse a workdir that holds another one.

    ``resume_changed`` accepts another config for an unfinished run with a resume state (e.g. a
    lower rate after a non-finite loss): the old config is kept as ``config.until-epoch<N>.gin``
    and the change listed in ``config_changes.json`` (copied into ``results.json``).
    """
    path = Workdir(workdir).config_gin
    if os.path.exists(path):
        with open(path) as f:
            previous = f.read()
        if previous != config_text:
            if resume_changed:
                _record_config_change(workdir, path, previous)
            elif not overwrite:
                raise ValueError(
                    f"Workdir {workdir!r} already holds a run with a different config (see "
                    f"{path}). Use a new --workdir, pass --overwrite to move the old run "
                    "aside (nothing is deleted), or --resume_changed_config to resume it with "
                    "this config (e.g. a lower train_eval.lr after a non-finite loss).")
            else:
                backup = f"{workdir.rstrip('/')}.old-{time.strftime('%Y%m%d-%H%M%S')}"
                shutil.move(workdir, backup)
                print(f"Moved the previous run to {backup}")
    elif os.path.isdir(workdir) and set(os.listdir(workdir)) - {lock.LOCK_NAME}:
        raise ValueError(f"Workdir {workdir!r} is not empty and was not made by launch.train; "
                         "choose another --workdir.")
    os.makedirs(workdir, exist_ok=True)
    if not os.path.exists(path) or resume_changed:
        Workdir(workdir).write_config_gin(config_text)


def _record_config_change(workdir, path, previous):
    from birds_tf.utils import records
    from birds_tf.utils.resume_state import ResumeState
    files = Workdir(workdir)
    if os.path.exists(files.results_json):
        raise ValueError(f"Workdir {workdir!r} holds a finished run (results.json); its config "
                         "is never changed. Use a new --workdir.")
    state_path = files.state_json
    try:
        with open(state_path) as f:
            epoch = int(ResumeState.from_json(f.read()).epoch)
    except (OSError, ValueError, TypeError):
        raise ValueError(f"--resume_changed_config: {workdir!r} has no resume state to continue "
                         f"({state_path} is missing or torn); start a new --workdir.") from None
    kept = files.kept_config_gin_name(epoch)
    records.atomic_write_text(files.path(kept), previous)
    changes = files.read_config_changes() or []
    changes.append({"from_epoch": epoch + 1, "previous_config": kept,
                    "time": time.strftime("%Y-%m-%d %H:%M:%S")})
    files.write_config_changes(changes)
    print(f"Resuming {workdir} at epoch {epoch + 1} with a changed config; the old one is "
          f"{kept} (listed in {CONFIG_CHANGES} and results.json).")


def write_operative_config(workdir):
    Workdir(workdir).write_operative_config_gin(gin.operative_config_str())


def fault_exit(prog, error):
    """The one line and exit code of a fault with its own code (``exit_code``): preempted (75),
    workdir in use (73), disk full (74); ``None`` for any other error."""
    code = getattr(error, "exit_code", None)
    if not isinstance(code, int):
        return None
    print(f"{prog}: {error}", file=sys.stderr, flush=True)
    return code


def results_row(results):
    keys = ("method", "arch", "dataset", "final_sparsity", "ra_best", "ra_final", "ra_diff",
            "sa_best", "sa_final", "sa_diff", "rgg_final")
    parts = []
    for key in keys:
        value = results.get(key)
        parts.append(f"{key}={value:.2f}" if isinstance(value, float) else f"{key}={value}")
    return "results: " + " ".join(parts)
