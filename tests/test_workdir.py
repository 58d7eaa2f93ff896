"""``Workdir``: the run folder's layout, named once, with the bytes today's readers expect."""
import ast
import json
import os
import re

import pytest

from birds_tf.utils import records
from birds_tf.utils import workdir as workdir_lib
from birds_tf.utils.workdir import Workdir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The layout as written by hand (docs/workdir.md): old workdirs have exactly these paths.
LAYOUT = {
    "config_json": "config.json", "config_gin": "config.gin",
    "operative_config_gin": "operative_config.gin", "config_changes_json": "config_changes.json",
    "results_json": "results.json", "metrics_csv": "metrics.csv", "run_json": "run.json",
    "checkpoints_dir": "checkpoints", "resume_dir": "checkpoints/resume",
    "state_json": "checkpoints/resume/state.json",
    "state_prev_json": "checkpoints/resume/state.prev.json", "masks_dir": "masks",
    "tensorboard_dir": "tensorboard", "tensorboard_figures_dir": "tensorboard/figures",
    "swa_resume_dir": "checkpoints/swa_resume", "figures_dir": "figures", "lock": ".lock",
}


def test_every_path_is_the_documented_one(tmp_path):
    files = Workdir(tmp_path / "run")
    for attr, rel in LAYOUT.items():
        assert getattr(files, attr) == os.path.join(str(tmp_path / "run"), *rel.split("/")), attr
    assert files.checkpoint("best") == os.path.join(files.root, "checkpoints", "best.keras")
    assert Workdir.checkpoint_name("final") == "checkpoints/final.keras"
    assert files.mask_file(7) == os.path.join(files.root, "masks", "epoch_007.npz")
    assert files.stage_metrics_csv("stage1") == os.path.join(files.root, "stage1_metrics.csv")
    assert Workdir.kept_config_gin_name(3) == "config.until-epoch3.gin"
    assert files.preempted_checkpoint(3, 17) == os.path.join(files.root, "checkpoints", "resume",
                                                             "preempted-3-17")
    assert Workdir.swa_resume_file_name(7) == "epoch_0007.weights.h5"
    assert Workdir.swa_resume_file_name(7, tmp=True) == "tmp_0007.weights.h5"
    assert Workdir.eval_json_name("data-x", "best") == "eval_data-x_best.json"
    assert (Workdir.STAGE1_JSON, Workdir.PRUNING_JSON, Workdir.IWI_STAGE_A_JSON) == (
        "stage1.json", "pruning.json", "iwi_stage_a.json")
    assert os.fspath(files) == files.root and Workdir(files) == files
    assert workdir_lib.RESULT_FILES == ("results.json", "metrics.csv", "config.json",
                                        "config.gin", "run.json")


def test_typed_writes_are_todays_bytes(tmp_path):
    files = Workdir(tmp_path)
    results = {"ra_best": 50.5, "dataset": "digits", "b": [1, 2]}
    files.write_results(results)
    with open(tmp_path / "results.json") as f:
        assert f.read() == json.dumps(results, indent=2, sort_keys=True)
    assert files.read_results() == results
    files.write_config({"lr": 0.1, "milestones": [2, 3]})
    assert json.loads((tmp_path / "config.json").read_text()) == {"lr": 0.1, "milestones": [2, 3]}
    assert files.read_config_changes() is None
    changes = [{"from_epoch": 3, "previous_config": "config.until-epoch2.gin"}]
    files.write_config_changes(changes)
    assert (tmp_path / "config_changes.json").read_text() == json.dumps(changes, indent=1) + "\n"
    assert files.read_config_changes() == changes
    rows = [{"epoch": 1, "lr": 0.1, "val_ra": 20.0}, {"epoch": 2, "lr": 0.1, "val_ra": 25.0}]
    files.write_metrics(rows)
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[:2] == ["epoch", "lr"] and "val_ra" in header
    assert files.read_metrics() == rows
    files.write_config_gin("train_eval.lr = 0.1\n")
    assert files.read_config_gin() == (tmp_path / "config.gin").read_text()


def test_mask_files_in_epoch_order(tmp_path):
    files = Workdir(tmp_path)
    os.makedirs(files.masks_dir)
    for epoch in (10, 0, 2):
        records.save_mask_file(files.mask_file(epoch), {"w": [[1, 0]]})
    assert [e for e, _ in files.mask_files()] == [0, 2, 10]
    assert Workdir(tmp_path / "none").mask_files() == []


def test_swa_averages_and_sigterm_checkpoints_are_listed_in_order(tmp_path):
    files = Workdir(tmp_path)
    os.makedirs(files.swa_resume_dir)
    for name in ("epoch_0010.weights.h5", "epoch_0002.weights.h5", "tmp_0011.weights.h5"):
        (tmp_path / "checkpoints" / "swa_resume" / name).write_bytes(b"")
    assert Workdir.swa_resume_files(files.swa_resume_dir) == [
        (2, os.path.join(files.swa_resume_dir, "epoch_0002.weights.h5")),
        (10, os.path.join(files.swa_resume_dir, "epoch_0010.weights.h5"))]
    assert files.preempted_checkpoint_files() == []
    os.makedirs(files.resume_dir)
    for name in ("preempted-2-5.index", "ckpt-2.index", "preempted-2-5.data-00000-of-00001"):
        (tmp_path / "checkpoints" / "resume" / name).write_bytes(b"")
    assert [os.path.basename(p) for p in files.preempted_checkpoint_files()] == [
        "preempted-2-5.data-00000-of-00001", "preempted-2-5.index"]


def test_check_names_the_missing_file(tmp_path):
    with pytest.raises(workdir_lib.NotAWorkdirError, match="no results.json"):
        workdir_lib.results(tmp_path)
    with pytest.raises(workdir_lib.NotAWorkdirError, match="checkpoints/best.keras"):
        workdir_lib.load_model(tmp_path, "best")


# Names of run-folder files that only ``utils/workdir.py`` may spell as a string constant.
FILE_NAMES = {"state.json", "state.prev.json", "results.json", "metrics.csv", "config.json",
              "config.gin", "operative_config.gin", "run.json", "config_changes.json",
              "best.keras", "final.keras", "swa.keras", "swa_best.keras", "stage1.json",
              "pruning.json", "iwi_stage_a.json", "swa_resume", "preempted", ".lock",
              "epoch_000.npz"}
# Folders of the run folder: spelled as a part of a joined path (a callback slot or a module may
# share the word).
DIR_NAMES = {"checkpoints", "resume", "masks", "tensorboard", "figures", "swa_resume"}
# Names with a number or a name in them, as a constant or as an f-string's text with ``{}`` for
# each field.
PATTERNS = [re.compile(p) for p in (
    r"^checkpoints/", r"_metrics\.csv$", r"^epoch_(\d+|\{\})\.npz$", r"\.weights\.h5$",
    r"^eval_.*\.json$", r"^\{\}\.keras$", r"^preempted-", r"^config\.until-epoch")]
# ``config.json`` inside a ``.keras`` zip is Keras' file, not the run folder's.
NOT_THE_RUN_FOLDER = {("birds_tf/utils/records.py", "config.json")}


def _spelled(path):
    """(line, name) of every run-folder name the file at ``path`` spells."""
    tree = ast.parse(open(path).read())
    # an f-string's text parts are judged as the whole f-string, below
    parts = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)
             for v in node.values}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                id(node) not in parts:
            value = node.value
            if value in FILE_NAMES or any(p.search(value) for p in PATTERNS):
                yield node.lineno, value
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            if any(p.search(text) for p in PATTERNS):
                yield node.lineno, text
        called = getattr(node, "func", None)
        if isinstance(node, ast.Call) and getattr(called, "attr", getattr(called, "id", None)) \
                == "join":
            for a in node.args:
                if isinstance(a, ast.Constant) and a.value in DIR_NAMES:
                    yield node.lineno, a.value


def _scan(root, tops, skip=("birds_tf/utils/workdir.py",)):
    found = []
    for top in tops:
        for folder, _, names in os.walk(os.path.join(root, top)):
            for name in sorted(names):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, root).replace(os.sep, "/")
                if not name.endswith(".py") or rel in skip:
                    continue
                found += [f"{rel}:{line}: {value!r}" for line, value in sorted(set(_spelled(path)))
                          if (rel, value) not in NOT_THE_RUN_FOLDER]
    return found


def test_no_module_but_workdir_spells_a_run_file():
    found = _scan(ROOT, ("birds_tf", "launch", "benchmarks"))
    assert not found, "name these through birds_tf.utils.workdir.Workdir:\n" + "\n".join(found)


def test_the_scan_finds_names_spelled_the_ways_they_were(tmp_path):
    """Each way a module spelled a run file before ``Workdir`` owned it is found."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "old.py").write_text("""import os
info_file = "stage1.json"
PREEMPTED_PREFIX = "preempted"
LOCK_NAME = ".lock"
resume_dir = os.path.join(d, "swa_resume")
path = os.path.join(resume_dir, f"epoch_{epoch:04d}.weights.h5")
first = os.path.join(masks_dir, "epoch_000.npz")
out = os.path.join(path, f"eval_{part}_{which}.json")
figures = os.path.join(workdir, "figures")
model = os.path.join(workdir, "checkpoints", f"{which}.keras")
SLOTS = ("tensorboard", "resume", "masks")
""")
    found = _scan(str(tmp_path), ("pkg",), skip=())
    assert [f.split(":", 1)[1] for f in found] == [
        "2: 'stage1.json'", "3: 'preempted'", "4: '.lock'", "5: 'swa_resume'",
        "6: 'epoch_{}.weights.h5'", "7: 'epoch_000.npz'", "8: 'eval_{}_{}.json'", "9: 'figures'",
        "10: 'checkpoints'", "10: '{}.keras'"], found
