"""Gin configs resolve from any directory: as given, then birds-tf's own, includes too; a name
found nowhere is refused naming where configs are looked up; a path of the flat layout before the
configs were grouped by paper table finds its file, and an include line of it is refused with the
new path."""
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
    for given in ("fb_plus_resnet18.gin", "gin/table1/fb_plus_resnet18.gin"):
        assert configs.resolve_config(given) == os.path.join(GIN, "table1",
                                                             "fb_plus_resnet18.gin")


def test_a_file_in_the_current_directory_wins(tmp_path):
    (tmp_path / "gin" / "quickstart").mkdir(parents=True)
    (tmp_path / "gin" / "quickstart" / "smoke.gin").write_text("train_eval.epochs = 1\n")
    assert configs.resolve_config("gin/quickstart/smoke.gin") == "gin/quickstart/smoke.gin"
    assert configs.resolve_config("smoke.gin") == os.path.join(GIN, "quickstart", "smoke.gin")


def test_a_missing_config_says_where_configs_are_looked_up(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        configs.resolve_config("fb_plus_resnet81.gin")
    message = str(info.value)
    assert "'fb_plus_resnet81.gin' not found" in message
    assert os.getcwd() in message and GIN in message  # the current directory, as the OS spells it
    assert "Did you mean gin/table1/fb_plus_resnet18.gin" in message
    with pytest.raises(FileNotFoundError, match="fb_plus_resnet18.gin or"):
        configs.resolve_config(str(tmp_path / "absolute.gin"))


def test_includes_resolve_from_outside_the_checkout():
    from launch import common
    text = common.parse_gin(["fb_plus_resnet18.gin", "smoke.gin"], [])
    # fb_plus_resnet18.gin includes gin/table1/fb_resnet18.gin, which includes
    # gin/table1/dense_resnet18.gin.
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
    (site / "birds_tf" / "configs" / "gin" / "quickstart").mkdir(parents=True)
    (site / "birds_tf" / "configs" / "gin" / "quickstart" / "smoke.gin").write_text("")
    assert configs.resolve_config("gin/quickstart/smoke.gin") == str(
        site / "birds_tf" / "configs" / "gin" / "quickstart" / "smoke.gin")


@pytest.mark.parametrize("old, new", [
    ("gin/fb_resnet18.gin", "table1/fb_resnet18.gin"),
    ("gin/dense_resnet18_cifar100.gin", "table2/dense_resnet18_cifar100.gin"),
    ("gin/rb_fast_resnet18_cifar100_s95.gin", "table_a6/rb_fast_resnet18_cifar100_s95.gin"),
    ("gin/synflow_vgg16_cifar100_s90.gin", "table_a12/synflow_vgg16_cifar100_s90.gin"),
    ("gin/fb_plus_kd_swa_resnet18.gin", "figure4/fb_plus_kd_swa_resnet18.gin"),
    ("gin/smoke.gin", "quickstart/smoke.gin"),
    ("gin/offline.gin", "offline/offline.gin"),
    ("gin/offline_search/c9_256img_64ep.gin", "offline/search/c9_256img_64ep.gin"),
    ("offline_fb_plus_channel.gin", "offline/offline_fb_plus_channel.gin"),
])
def test_a_path_of_the_flat_layout_finds_its_file(old, new):
    assert configs.moved_config(old) == "gin/" + new
    assert configs.resolve_config(old) == os.path.join(GIN, *new.split("/"))


def test_only_flat_layout_paths_and_bare_names_are_looked_up_by_file_name(tmp_path):
    """A wrong folder or the user's own folder is not silently swapped for birds-tf's file."""
    for given in ("gin/table2/fb_resnet18.gin", "mine/fb_resnet18.gin",
                  str(tmp_path / "fb_resnet18.gin"), "gin/no_such_config.gin"):
        assert configs.moved_config(given) is None, given
        assert configs.find_config(given) is None, given
    (tmp_path / "gin").mkdir()
    (tmp_path / "gin" / "fb_resnet18.gin").write_text("train_eval.epochs = 1\n")
    assert configs.find_config("gin/fb_resnet18.gin") == "gin/fb_resnet18.gin"  # the user's own


def test_an_include_of_the_flat_layout_is_refused_with_the_new_path(tmp_path):
    from launch import common
    (tmp_path / "mine.gin").write_text("include 'gin/fb_plus_resnet18.gin'\n")
    with pytest.raises(configs.ConfigNotFoundError) as info:
        common.parse_gin(["mine.gin"], [])
    assert str(info.value) == (
        "mine.gin: include 'gin/fb_plus_resnet18.gin' names no gin file; birds-tf's configs are "
        "grouped by paper table now: write include 'gin/table1/fb_plus_resnet18.gin'.")
    (tmp_path / "other.gin").write_text("include 'mine.gin'\n")
    with pytest.raises(configs.ConfigNotFoundError, match="^mine.gin: include 'gin/fb_plus"):
        common.parse_gin(["other.gin"], [])  # found through the file that includes it
    (tmp_path / "typo.gin").write_text("include 'gin/table1/fb_plus_resnet81.gin'\n")
    with pytest.raises(configs.ConfigNotFoundError,
                       match="^typo.gin: include 'gin/table1/fb_plus_resnet81.gin' names no gin "
                             "file; looked"):
        common.parse_gin(["typo.gin"], [])
