"""Every gin file parses, names its command and paper row, and binds only known parameters."""
import glob
import os

import gin
import pytest

from launch import common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIN_FILES = sorted(glob.glob(os.path.join(ROOT, "gin", "*.gin")))


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    monkeypatch.chdir(ROOT)
    gin.clear_config()
    yield
    gin.clear_config()


def test_there_are_configs():
    names = {os.path.basename(p) for p in GIN_FILES}
    assert {"dense_resnet18.gin", "quickstart.gin", "smoke.gin", "fb_resnet18.gin",
            "fb_plus_resnet18.gin", "fb_plus_resnet18_official_code.gin"} <= names


@pytest.mark.parametrize("path", GIN_FILES, ids=os.path.basename)
def test_gin_file_parses_and_has_a_header(path):
    with open(path) as f:
        head = f.read().split("\n")[:3]
    assert head[0].startswith("# Command: python -m launch.train --gin_file=gin/"), head[0]
    assert any(line.startswith("# Reproduces:") for line in head), head
    files = [path] if path.endswith("smoke.gin") else [path, os.path.join(ROOT, "gin",
                                                                           "smoke.gin")]
    common.parse_gin(files, [])
    # The experiment's own validation runs on the parsed values without starting any work.
    from birds_tf.experiment import train_eval as experiment
    bound = gin.get_bindings("train_eval")
    config = experiment.Config(**{k: v for k, v in bound.items()
                                  if k in experiment.Config.__dataclass_fields__})
    config.milestones = tuple(config.milestones)
    config.validate()
    from birds_tf.experiment import method as methods
    methods.get(config.method)(config)
