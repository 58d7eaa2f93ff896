"""Every gin file parses, opens with the command that runs it (naming its own path) and its paper
row, sits in the folder of the table it reproduces, and binds only known parameters; old flat
paths still find their file."""
import glob
import os
import re
import shlex

import gin
import pytest

from launch import common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIN_FILES = sorted(glob.glob(os.path.join(ROOT, "gin", "**", "*.gin"), recursive=True))
SMOKE = os.path.join(ROOT, "gin", "quickstart", "smoke.gin")
# What a folder's files must say in their "# Reproduces:" lines (the paper's table or figure,
# or that they reproduce no row of it).
FOLDER_SAYS = {
    "table1": r"Table 1\b", "table2": r"Table 2\b", "table3": r"Table 3\b",
    "table_a6": r"Table A6\b", "table_a10": r"Table A10\b", "table_a11": r"Table A11\b",
    "table_a12": r"Table A12\b", "table_a17": r"Table A17\b", "figure4": r"Figure 4\b",
    "beyond_paper": r"no (paper )?row", "quickstart": r"no paper row|nothing",
    "offline": r"no paper row", "offline/search": r"no paper row",
}


def _rel(path):
    return os.path.relpath(path, ROOT).replace(os.sep, "/")


def _header(path):
    """The first line (the command) and the "# Reproduces:" comment block joined."""
    with open(path) as f:
        lines = f.read().split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("# Reproduces:"))
    block = [lines[start]]
    for line in lines[start + 1:]:
        if not line.startswith("#   "):
            break
        block.append(line[1:])
    return lines[0], " ".join(" ".join(block).split()), start


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    monkeypatch.chdir(ROOT)
    gin.clear_config()
    yield
    gin.clear_config()


def test_there_are_configs():
    names = {_rel(p) for p in GIN_FILES}
    assert {"gin/table1/dense_resnet18.gin", "gin/quickstart/quickstart.gin",
            "gin/quickstart/smoke.gin", "gin/table1/fb_resnet18.gin",
            "gin/table1/fb_plus_resnet18.gin", "gin/table1/fb_plus_resnet18_official_code.gin",
            "gin/offline/offline.gin", "gin/offline/search/c9_256img_64ep.gin"} <= names
    # No config left in the flat layout, and none in a folder without a rule below.
    assert {os.path.dirname(n)[len("gin/"):] for n in names} == set(FOLDER_SAYS)


def test_file_names_are_unique_across_the_folders():
    """A bare name and an old flat path find a config by its file name alone."""
    names = [os.path.basename(p) for p in GIN_FILES]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []


@pytest.mark.parametrize("path", GIN_FILES, ids=_rel)
def test_each_config_sits_in_the_folder_of_what_it_reproduces(path):
    folder = os.path.dirname(_rel(path))[len("gin/"):]
    _, reproduces, start = _header(path)
    assert start <= 2, "the '# Reproduces:' line comes right after the command"
    assert re.search(FOLDER_SAYS[folder], reproduces), (folder, reproduces)


@pytest.mark.parametrize("path", GIN_FILES, ids=os.path.basename)
def test_gin_file_opens_with_its_own_command_and_parses(path):
    """The command on the first line names this file by its path and runs as written: its gin
    files parse (with smoke.gin after them, as tests run every config)."""
    command, _, _ = _header(path)
    words = shlex.split(command[len("# Command:"):])
    assert words[:3] in (["python", "-m", "launch.train"],
                         ["python", "-m", "launch.setting_search"]), command
    if words[2] == "launch.train":
        files = [w[len("--gin_file="):] for w in words if w.startswith("--gin_file=")]
        assert [w for w in words if w.startswith("--workdir=runs/")], command
    else:
        from launch.setting_search import DENSE_GIN
        files = [DENSE_GIN] + [w[len("--candidate="):] for w in words
                               if w.startswith("--candidate=")]
    assert _rel(path) in files, f"{_rel(path)}'s command names {files}"
    assert all(os.path.isfile(os.path.join(ROOT, f)) for f in files), files
    common.parse_gin(files + ([] if SMOKE in map(os.path.abspath, files) else [SMOKE]), [])
    # The experiment's own validation runs on the parsed values without starting any work.
    from birds_tf.experiment import train_eval as experiment
    bound = gin.get_bindings("train_eval")
    config = experiment.Config(**{k: v for k, v in bound.items()
                                  if k in experiment.Config.__dataclass_fields__})
    config.milestones = tuple(config.milestones)
    config.validate()
    from birds_tf.experiment import method as methods
    methods.get(config.method)(config)
