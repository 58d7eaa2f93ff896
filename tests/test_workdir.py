"""``Workdir``: the run folder's layout, named once, with the bytes today's readers expect."""
import ast
import json
import os

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
    "tensorboard_dir": "tensorboard",
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
    assert workdir_lib.mask_files(tmp_path) == files.mask_files()
    assert Workdir(tmp_path / "none").mask_files() == []


def test_check_names_the_missing_file(tmp_path):
    with pytest.raises(workdir_lib.NotAWorkdirError, match="no results.json"):
        workdir_lib.results(tmp_path)
    with pytest.raises(workdir_lib.NotAWorkdirError, match="checkpoints/best.keras"):
        workdir_lib.load_model(tmp_path, "best")


# Names of run-folder files that only ``utils/workdir.py`` may spell as a string constant.
FILE_NAMES = {"state.json", "state.prev.json", "results.json", "metrics.csv", "config.json",
              "config.gin", "operative_config.gin", "run.json", "config_changes.json",
              "best.keras", "final.keras", "swa.keras", "swa_best.keras"}
# ``config.json`` inside a ``.keras`` zip is Keras' file, not the run folder's.
NOT_THE_RUN_FOLDER = {("birds_tf/utils/records.py", "config.json")}


def _spelled(path):
    tree = ast.parse(open(path).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            value = node.value
            if value in FILE_NAMES or value.startswith("checkpoints/") or \
                    value.endswith("_metrics.csv"):
                yield node.lineno, value
        if isinstance(node, ast.Call) and any(isinstance(a, ast.Constant) and
                                              a.value == "checkpoints" for a in node.args):
            yield node.lineno, "checkpoints"


def test_no_module_but_workdir_spells_a_run_file():
    found = []
    for top in ("birds_tf", "launch", "benchmarks"):
        for folder, _, names in os.walk(os.path.join(ROOT, top)):
            for name in names:
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, ROOT).replace(os.sep, "/")
                if not name.endswith(".py") or rel == "birds_tf/utils/workdir.py":
                    continue
                found += [f"{rel}:{line}: {value!r}" for line, value in _spelled(path)
                          if (rel, value) not in NOT_THE_RUN_FOLDER]
    assert not found, "name these through birds_tf.utils.workdir.Workdir:\n" + "\n".join(found)
