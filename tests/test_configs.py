"""Gin configs resolve from any directory: as given, then birds-tf's own, includes too; a name
found nowhere is refused naming where configs are looked up."""
import os

import gin
import pytest

from birds_tf.experiment import configs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIN = os.path.join(ROOT, "gin")


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a user's directory, not the checkout
    gin.clear_config()
    yield
    gin.clear_config()


def test_bare_names_and_gin_paths_find_birds_tf_configs():
    assert configs.configs_dir() == GIN
    for given in ("fb_plus_resnet18.gin", "gin/fb_plus_resnet18.gin"):
        assert configs.resolve_config(given) == os.path.join(GIN, "fb_plus_resnet18.gin")


def test_a_file_in_the_current_directory_wins(tmp_path):
    (tmp_path / "gin").mkdir()
    (tmp_path / "gin" / "smoke.gin").write_text("train_eval.epochs = 1\n")
    assert configs.resolve_config("gin/smoke.gin") == "gin/smoke.gin"
    assert configs.resolve_config("smoke.gin") == os.path.join(GIN, "smoke.gin")


def test_a_missing_config_says_where_configs_are_looked_up(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        configs.resolve_config("fb_plus_resnet81.gin")
    message = str(info.value)
    assert "'fb_plus_resnet81.gin' not found" in message
    assert os.getcwd() in message and GIN in message  # the current directory, as the OS spells it
    assert "Did you mean fb_plus_resnet18.gin" in message
    with pytest.raises(FileNotFoundError, match="fb_plus_resnet18.gin or"):
        configs.resolve_config(str(tmp_path / "absolute.gin"))


def test_includes_resolve_from_outside_the_checkout():
    from launch import common
    text = common.parse_gin(["fb_plus_resnet18.gin", "smoke.gin"], [])
    # fb_plus_resnet18.gin includes gin/fb_resnet18.gin, which includes gin/dense_resnet18.gin.
    assert "train_eval.method = 'fb_plus'" in text and "train_eval.dataset = 'digits'" in text


def test_site_packages_gin_code_is_not_taken_for_configs(tmp_path, monkeypatch):
    """Installed, the folder above birds_tf/ is site-packages, whose gin/ is gin-config."""
    site = tmp_path / "site-packages"
    (site / "gin").mkdir(parents=True)
    (site / "gin" / "config.py").write_text("")
    (site / "birds_tf").mkdir()
    monkeypatch.setattr(configs, "_PACKAGE", str(site / "birds_tf"))
    assert configs.config_root() is None
    with pytest.raises(FileNotFoundError, match="has no gin/ folder"):
        configs.resolve_config("smoke.gin")
    (site / "birds_tf" / "configs" / "gin").mkdir(parents=True)
    (site / "birds_tf" / "configs" / "gin" / "smoke.gin").write_text("")
    assert configs.resolve_config("gin/smoke.gin") == str(
        site / "birds_tf" / "configs" / "gin" / "smoke.gin")
