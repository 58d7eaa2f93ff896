"""The paper's numbers in birds_tf/metrics/paper_tables.csv against the paper's own text."""
import os
import re

import pytest

from birds_tf.metrics import paper
from tests import test_gin_configs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = os.path.join(os.path.dirname(ROOT), "shared", "seeds", "000_2224bf7c7b280bf3.txt")


def _text_rows(caption, count):
    """The first `count` lines with >= 7 decimal numbers after the line starting with
    `caption`, as lists of floats (a stray trailing '.' in '80.93.' is the paper's typo)."""
    with open(SEED, encoding="utf-8") as f:
        lines = f.read().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(caption))
    rows = []
    for line in lines[start + 1:]:
        numbers = [float(n) for n in re.findall(r"-?\d+\.\d+", line)]
        if len(numbers) >= 7:
            rows.append(numbers)
            if len(rows) == count:
                return rows
    raise AssertionError(f"{caption}: only {len(rows)} rows found")


@pytest.mark.skipif(not os.path.exists(SEED), reason="the paper's text is not checked out")
@pytest.mark.parametrize("table, row, caption, index, flops", [
    ("1", "dense", "Table 1:", 0, True),
    ("1", "fb_plus", "Table 1:", 10, True),
    ("1", "rb_s90", "Table 1:", 18, True),
    ("2", "fb_plus_tiny", "Table 2:", 11, True),
    ("3", "fb_plus_c100", "Table 3:", 7, True),
    ("A6", "rb_pgd_s95", "Table A6:", 6, False),
    ("A12", "fb_plus_s90", "Table A12:", 18, False),
    ("A17", "fb_plus_s90", "Table A17:", 4, False),
])
def test_rows_match_the_paper_text(table, row, caption, index, flops):
    numbers = _text_rows(caption, index + 1)[index]
    entry = next(r for r in paper.table(table) if r.row == row)
    v = entry.values
    expected = numbers[:6]
    assert [v[k] for k in ("ra_best", "ra_final", "ra_diff", "sa_best", "sa_final",
                           "sa_diff")] == expected
    rest = numbers[6:]
    if flops:
        assert v["training_flops"] == pytest.approx(rest[0] * 1e17)
        assert v["inference_flops"] == pytest.approx(rest[1] * 1e9)
        rest = rest[2:]
    assert v["rgg"] == rest[0]
    if entry.method != "dense":
        assert v["rgg_reduction"] == rest[1]
        # The paper's reduction is the dense RGG minus the row's.
        dense = next(r for r in paper.table(table) if r.group == entry.group
                     and r.method == "dense")
        assert v["rgg_reduction"] == pytest.approx(dense.values["rgg"] - v["rgg"], abs=0.011)


def test_rows_are_unique_and_point_at_existing_methods(monkeypatch):
    from birds_tf.experiment import method as methods
    for name, rows in paper.load().items():
        ids = [r.row for r in rows]
        assert len(ids) == len(set(ids)), name
        assert all(r.method in methods.names() for r in rows), name
        assert all(r.gin.startswith("gin/") and r.gin.endswith(".gin") for r in rows)
    # Every config a row names that exists trains the method and sparsity the row says.
    import gin
    from launch import common
    monkeypatch.chdir(ROOT)
    for rows in paper.load().values():
        for r in rows:
            assert os.path.isfile(r.gin), r
            gin.clear_config()
            common.parse_gin([r.gin], [])
            assert gin.query_parameter("train_eval.method") == r.method, r
            sparsity = 0.0 if r.method == "dense" else gin.query_parameter("train_eval.sparsity")
            assert 100 * sparsity == pytest.approx(r.sparsity), r
    gin.clear_config()


def _reproduces(path):
    """A gin file's "# Reproduces:" comment block, joined into one line."""
    return test_gin_configs._header(os.path.join(ROOT, path))[1]


def test_each_rows_config_names_the_rows_table_and_sits_in_a_table_folder():
    """A row's gin file says in its header that it reproduces that row's table, and lives in the
    folder of one of the tables it names (gin/table1/ ... gin/table_a17/)."""
    for name, rows in paper.load().items():
        for r in rows:
            says = _reproduces(r.gin)
            assert re.search(rf"Table {r.table}\b", says), (r.table, r.row, r.gin, says)
            folder = r.gin.split("/")[1]
            assert re.fullmatch(r"table(\d|_a\d+)", folder), r.gin
            table = folder[len("table"):].lstrip("_").upper()
            assert re.search(rf"Table {table}\b", says), (r.gin, says)


@pytest.mark.parametrize("table", ["1", "2", "A17"])
def test_offline_scale_gives_every_row_a_valid_cpu_config(monkeypatch, tmp_path, table):
    """Each row's config with gin/offline/offline.gin on top passes the experiment's and the
    method's own validation, on the animals data and the 64-epoch schedule."""
    import gin
    from launch import common, reproduce
    from birds_tf.experiment import method as methods
    from birds_tf.experiment import train_eval as experiment
    monkeypatch.chdir(ROOT)
    _, runs, _ = reproduce.plan(table, 1, "offline", str(tmp_path / "out"))
    for row, _, files, bindings, _ in runs:
        gin.clear_config()
        common.parse_gin(files, bindings)
        bound = gin.get_bindings("train_eval")
        config = experiment.Config(**{k: v for k, v in bound.items()
                                      if k in experiment.Config.__dataclass_fields__})
        config.milestones = tuple(config.milestones)
        config.validate()
        assert (config.dataset, config.epochs, config.augment) == ("animals", 64, False), row
        width = config.arch_kwargs["width"]
        assert width == (2 if row.arch == "wide_resnet34_10" else 8), row
        methods.get(config.method)(config)
    gin.clear_config()
