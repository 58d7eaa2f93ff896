"""A run folder of ``launch.train``: every file's name (``Workdir``), and reading a finished one.

Why one place: training writes the folder, and the launchers, reports, figures, evaluation and
export read it; each file is named here only (``Workdir``'s properties), so a rename or a new
file is one edit and no reader spells a name that drifted. The typed helpers read and write
through ``records`` (atomic writes, the same bytes as before). The run's settings are read by
``birds_tf.experiment.train_eval.Config.from_workdir``; its data splits and a legend label by
``birds_tf.plots.common`` (``splits``, ``label``), the layers that know datasets and method
names.

The module functions (``check``, ``results``, ``load_model``) serve the report, the figures, the
exporter, evaluation and the experiment, which start from a workdir path given on a command line
and must fail with the path in the message when it is not one. A loader only one layer needs
lives with it (``plots.curves`` reads ``metrics.csv`` and the masks through ``Workdir``).
"""
import glob
import json
import os
import re

from birds_tf.utils import records

__all__ = ["Workdir", "NotAWorkdirError", "check", "results", "load_model", "CHECKPOINTS",
           "RESULT_FILES"]

# The saved classifiers a run folder holds (``checkpoints/<which>.keras``).
CHECKPOINTS = ("best", "final")


class Workdir:
    """The files and folders of one run folder, each named once.

    A committed run (``launch.reproduce --results_dir``) has the same layout for the files it
    keeps (``RESULT_FILES``). Paths are joined, nothing is created or checked here: reading a
    missing file raises what ``open`` raises.

    Args:
      root: the run folder (a path or path-like; a ``Workdir`` too).
    """

    CONFIG_JSON = "config.json"  # the settings as ``train_eval.Config`` fields
    CONFIG_GIN = "config.gin"  # the launcher's gin text, what a rerun must match
    OPERATIVE_CONFIG_GIN = "operative_config.gin"
    CONFIG_CHANGES_JSON = "config_changes.json"  # resumed under another config
    RESULTS_JSON = "results.json"  # its presence marks the run finished
    METRICS_CSV = "metrics.csv"
    RUN_JSON = "run.json"  # launch.reproduce: commit, machine, wall time
    CHECKPOINTS_DIR = "checkpoints"
    RESUME_DIR = "resume"  # under checkpoints/
    STATE_JSON = "state.json"  # under checkpoints/resume/
    STATE_PREV_JSON = "state.prev.json"
    PREEMPTED_PREFIX = "preempted"  # resume/preempted-<epoch>-<step>: a SIGTERM's checkpoint
    SWA_RESUME_DIR = "swa_resume"  # under checkpoints/: the SWA average of the latest epochs
    MASKS_DIR = "masks"
    TENSORBOARD_DIR = "tensorboard"
    FIGURES_DIR = "figures"  # launch.plot's PNGs; also under tensorboard/ (the image summaries)
    LOCK = ".lock"  # while a process trains into the folder (utils.lock)
    # A method's own record of its pre-stage or pruning step (``Method.info_file``).
    STAGE1_JSON = "stage1.json"  # Robust Bird's stage 1
    PRUNING_JSON = "pruning.json"  # the static methods' pruning step
    IWI_STAGE_A_JSON = "iwi_stage_a.json"  # inverse weights inheritance's stage A

    def __init__(self, root):
        self.root = os.fspath(root)

    def __fspath__(self):
        return self.root

    def __repr__(self):
        return f"Workdir({self.root!r})"

    def __eq__(self, other):
        return isinstance(other, Workdir) and other.root == self.root

    def __hash__(self):
        return hash(self.root)

    def path(self, *parts):
        """``root/parts...``: a file of the run not named here (a plug-in's own record)."""
        return os.path.join(self.root, *parts)

    # -- the files -------------------------------------------------------------------------------
    @property
    def config_json(self):
        return self.path(self.CONFIG_JSON)

    @property
    def config_gin(self):
        return self.path(self.CONFIG_GIN)

    @property
    def operative_config_gin(self):
        return self.path(self.OPERATIVE_CONFIG_GIN)

    @property
    def config_changes_json(self):
        return self.path(self.CONFIG_CHANGES_JSON)

    @staticmethod
    def kept_config_gin_name(epoch):
        """The name the config of the epochs up to ``epoch`` keeps after a changed-config
        resume (``config_changes.json`` records it as written)."""
        return f"config.until-epoch{int(epoch)}.gin"

    @property
    def results_json(self):
        return self.path(self.RESULTS_JSON)

    @property
    def metrics_csv(self):
        return self.path(self.METRICS_CSV)

    def stage_metrics_csv(self, stage):
        """A pre-stage's own rows (``<stage>_metrics.csv``), kept out of ``metrics.csv``."""
        return self.path(f"{stage}_metrics.csv")

    @property
    def run_json(self):
        return self.path(self.RUN_JSON)

    @property
    def checkpoints_dir(self):
        return self.path(self.CHECKPOINTS_DIR)

    @staticmethod
    def model_file_name(which):
        """``<which>.keras``: a saved classifier's name inside ``checkpoints/``."""
        return f"{which}.keras"

    @staticmethod
    def checkpoint_name(which):
        """``checkpoints/<which>.keras`` relative to the run folder (for ``check``, messages)."""
        return f"{Workdir.CHECKPOINTS_DIR}/{Workdir.model_file_name(which)}"

    def checkpoint(self, which):
        """The saved classifier ``which`` (``best``, ``final``, ``swa``, ``swa_best``): a
        ``.keras`` file in ``checkpoints/``."""
        return self.path(self.CHECKPOINTS_DIR, self.model_file_name(which))

    def saved_checkpoints(self):
        """Names of the ``.keras`` files in ``checkpoints/`` (``[]`` when it does not exist)."""
        if not os.path.isdir(self.checkpoints_dir):
            return []
        return sorted(f for f in os.listdir(self.checkpoints_dir) if f.endswith(".keras"))

    @property
    def resume_dir(self):
        """The resume checkpoints (``tf.train.CheckpointManager``) and their state."""
        return self.path(self.CHECKPOINTS_DIR, self.RESUME_DIR)

    def preempted_checkpoint(self, epoch, step):
        """The trainer's checkpoint prefix at a SIGTERM in ``epoch`` after ``step`` steps."""
        return os.path.join(self.resume_dir, f"{self.PREEMPTED_PREFIX}-{int(epoch)}-{int(step)}")

    def preempted_checkpoint_files(self):
        """Every file of every SIGTERM checkpoint in ``resume/`` (``[]`` when none)."""
        return sorted(glob.glob(os.path.join(self.resume_dir, self.PREEMPTED_PREFIX + "-*")))

    @property
    def swa_resume_dir(self):
        return self.path(self.CHECKPOINTS_DIR, self.SWA_RESUME_DIR)

    @staticmethod
    def swa_resume_file_name(epoch, tmp=False):
        """The SWA average after ``epoch`` (``epoch_XXXX.weights.h5``); ``tmp``: the name it is
        written under before the atomic rename."""
        return f"{'tmp' if tmp else 'epoch'}_{int(epoch):04d}.weights.h5"

    @staticmethod
    def swa_resume_files(folder):
        """``[(epoch, path)]`` of the SWA averages in ``folder`` (a ``swa_resume/``), in epoch
        order."""
        paths = glob.glob(os.path.join(os.fspath(folder), "epoch_*.weights.h5"))
        return sorted((int(re.search(r"epoch_(\d+)", os.path.basename(p)).group(1)), p)
                      for p in paths)

    @property
    def state_json(self):
        return os.path.join(self.resume_dir, self.STATE_JSON)

    @property
    def state_prev_json(self):
        return os.path.join(self.resume_dir, self.STATE_PREV_JSON)

    REBUILT_PREFIX = "shrunk"  # under checkpoints/resume/; the one rebuild so far is a shrink

    def rebuilt_checkpoint(self, epoch):
        """The checkpoint prefix of a model rebuilt after ``epoch`` (``fb_plus_channel``'s
        shrink): ``checkpoints/resume/shrunk-<epoch>``."""
        return os.path.join(self.resume_dir, f"{self.REBUILT_PREFIX}-{int(epoch)}")

    @property
    def masks_dir(self):
        return self.path(self.MASKS_DIR)

    @staticmethod
    def mask_file_name(epoch):
        return f"epoch_{int(epoch):03d}.npz"

    def mask_file(self, epoch):
        """The masks after ``epoch`` (0: before training): ``masks/epoch_XXX.npz``."""
        return os.path.join(self.masks_dir, self.mask_file_name(epoch))

    def mask_files(self):
        """``[(epoch, path)]`` of the per-epoch mask files, in epoch order."""
        paths = glob.glob(os.path.join(self.masks_dir, "epoch_*.npz"))
        return sorted((int(re.search(r"epoch_(\d+)", os.path.basename(p)).group(1)), p)
                      for p in paths)

    @property
    def tensorboard_dir(self):
        return self.path(self.TENSORBOARD_DIR)

    @property
    def tensorboard_figures_dir(self):
        """The figures' image summaries, beside the training curves' event files."""
        return self.path(self.TENSORBOARD_DIR, self.FIGURES_DIR)

    @property
    def figures_dir(self):
        """``launch.plot``'s PNGs when no ``--out`` is given."""
        return self.path(self.FIGURES_DIR)

    @property
    def lock(self):
        return self.path(self.LOCK)

    @staticmethod
    def eval_json_name(part, which):
        """``launch.evaluate``'s report on a workdir: ``eval_<split or data-stem>_<which>.json``."""
        return f"eval_{part}_{which}.json"

    # -- typed reads and writes (through ``records``) ----------------------------------------------
    def read_results(self):
        """``results.json`` as a dict."""
        return records.read_json(self.results_json)

    def write_results(self, results):
        records.write_json(self.results_json, results)

    def read_config(self):
        """``config.json``: the ``train_eval.Config`` fields as plain values."""
        return records.read_json(self.config_json)

    def write_config(self, values):
        records.write_json(self.config_json, values)

    def read_config_gin(self):
        with open(self.config_gin) as f:
            return f.read()

    def write_config_gin(self, text):
        records.atomic_write_text(self.config_gin, text)

    def write_operative_config_gin(self, text):
        records.atomic_write_text(self.operative_config_gin, text)

    def read_config_changes(self):
        """``config_changes.json``'s list; ``None`` when the config never changed."""
        if not os.path.exists(self.config_changes_json):
            return None
        return records.read_json(self.config_changes_json)

    def write_config_changes(self, changes):
        records.atomic_write_text(self.config_changes_json, json.dumps(changes, indent=1) + "\n")

    def read_run(self):
        """``run.json`` (``launch.reproduce``'s record of where the run came from)."""
        return records.read_json(self.run_json)

    def write_run(self, record):
        records.write_json(self.run_json, record)

    def read_metrics(self):
        """``metrics.csv``'s rows (``records.read_metrics_csv``)."""
        return records.read_metrics_csv(self.metrics_csv)

    def write_metrics(self, history):
        records.write_metrics_csv(self.metrics_csv, history)


# The small files of a finished run that ``launch.reproduce --results_dir`` keeps (no
# checkpoints, no event files); ``results.json`` is copied last, marking the copy finished.
RESULT_FILES = (Workdir.RESULTS_JSON, Workdir.METRICS_CSV, Workdir.CONFIG_JSON,
                Workdir.CONFIG_GIN, Workdir.RUN_JSON)


class NotAWorkdirError(ValueError):
    """The path is not a finished workdir of ``launch.train``."""


def check(workdir, need=(Workdir.RESULTS_JSON,)):
    """``workdir`` as a string, after checking it exists and holds the files in ``need`` (names
    relative to it: ``Workdir``'s constants, ``Workdir.checkpoint_name(which)``)."""
    workdir = os.fspath(workdir)
    if not os.path.isdir(workdir):
        raise NotAWorkdirError(f"{workdir!r} is not a workdir: no such directory.")
    for name in need:
        if not os.path.exists(os.path.join(workdir, name)):
            raise NotAWorkdirError(
                f"{workdir!r} is not a finished launch.train workdir: it has no {name} "
                "(train into it with python -m launch.train --workdir=...).")
    return workdir


def results(workdir):
    out = Workdir(check(workdir)).read_results()
    out.setdefault("workdir", os.fspath(workdir))
    return out


def load_model(workdir, which="final"):
    """The saved classifier (masks included): ``checkpoints/{which}.keras``."""
    if which not in CHECKPOINTS:
        raise ValueError(f"which must be 'best' or 'final', got {which!r}.")
    return records.load_model(
        Workdir(check(workdir, (Workdir.checkpoint_name(which),))).checkpoint(which))
