"""RESULTS.md's tables are generated from the committed runs under results/ (launch.committed):
every generated block must equal what the command makes now, so prose and data cannot drift;
the generator itself is checked on a hand-made results folder."""
import json
import os
import subprocess
import sys

import pytest
from scipy import stats

from launch import committed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_MD = os.path.join(ROOT, "RESULTS.md")


@pytest.fixture(autouse=True)
def _cwd(monkeypatch):
    monkeypatch.chdir(ROOT)


def test_results_md_blocks_are_what_the_committed_runs_give():
    blocks = committed.blocks(RESULTS_MD)
    assert "results/table1_offline" in blocks, "RESULTS.md lost the offline Table 1 block"
    for folder, body in blocks.items():
        assert body == committed.block(folder), (
            f"RESULTS.md's block for {folder} is stale: run python -m launch.report "
            f"--results={folder} --update=RESULTS.md")


def test_results_md_reading_quotes_only_the_generated_numbers():
    """Every two-decimal number in RESULTS.md's "What it says" is one the generated block prints,
    and its train-RA range is the committed runs' (so the reading cannot drift from the data)."""
    import glob
    import re
    text = open(RESULTS_MD).read()
    reading = text[text.index("**What it says**"):text.index("Wall time:")]
    body = committed.blocks(RESULTS_MD)["results/table1_offline"]
    quoted = set(re.findall(r"(?<![\d.])\d+\.\d\d(?!\d)", reading))
    assert quoted, "the reading quotes no number"
    missing = sorted(q for q in quoted if q not in body)
    assert not missing, f"RESULTS.md's reading quotes numbers the block does not print: {missing}"
    train = [json.load(open(f))["train_ra_final"] for f in
             glob.glob(os.path.join(ROOT, "results/table1_offline/*/seed*/results.json"))]
    assert f"train RA (PGD-20, final\n   model) is {min(train):.1f}-{max(train):.0f}% in every one " \
        f"of the {len(train)} runs" in reading


# Hand-made runs: (RA best, RA final, RGG) per seed.
RUNS = {"dense": {1: (60.0, 59.0, 21.0), 2: (61.0, 60.0, 27.0), 3: (62.0, 58.0, 24.0)},
        "fb_plus": {1: (59.0, 58.0, 18.0), 2: (58.0, 57.0, 16.0), 3: (61.0, 57.0, 21.0)},
        "fb": {2: (57.0, 55.0, 20.0)}}


def _folder(path, runs=RUNS):
    path.mkdir()
    (path / "reproduce.json").write_text(json.dumps({"table": "1", "scale": "offline"}))
    for row, seeds in runs.items():
        for seed, (best, final, rgg) in seeds.items():
            run = path / row / f"seed{seed}"
            run.mkdir(parents=True)
            (run / "results.json").write_text(json.dumps(
                {"method": row, "ra_best": best, "ra_final": final, "ra_diff": best - final,
                 "rgg_final": rgg}))
            (run / "config.json").write_text(json.dumps(
                {"dataset": "animals", "arch": "preact_resnet18", "arch_kwargs": {"width": 8},
                 "max_train": 512, "augment": False, "epochs": 24, "lr": 0.05,
                 "milestones": [12, 18], "train_steps": 5, "train_eps": 0.1, "eval_steps": 10,
                 "max_eval": 128, "final_test": True, "final_test_steps": 20,
                 "eval_step_size": 0.025}))
            (run / "run.json").write_text(json.dumps(
                {"commit": "abc1234", "cpu": "Test CPU", "cpu_count": 2,
                 "tensorflow": "2.21.0", "wall_seconds": 120.0 * seed}))
    return str(path)


def test_block_has_the_paired_statistics_of_hand_made_runs(tmp_path):
    text = committed.block(_folder(tmp_path / "res"))
    # FB+ - dense per seed: RA final -1, -3, -1; scipy's paired t test as the reference.
    d = [-1.0, -3.0, -1.0]
    low, high = stats.t.interval(0.95, 2, loc=sum(d) / 3, scale=stats.sem(d))
    p = stats.ttest_rel([58, 57, 57], [59, 60, 58]).pvalue
    assert f"-1.67 [{low:+.2f}, {high:+.2f}], p={p:.3f}" in text
    # RA best -1, -3, -1 too; RGG -3, -11, -3.
    assert "| 80 | Flying Bird+ | 3 |" in text
    # One pair only: no interval.
    assert "| 80 | Flying Bird | 1 | -4.00 (n/a, n=1) | -5.00 (n/a, n=1) | -7.00 (n/a, n=1) |" \
        in text
    # The heading names what was trained and the paper's setting beside it.
    assert "**Ours: animal silhouettes" in text and "the first 512 training images" in text
    assert "Paper: CIFAR-10, ResNet-18 in the paper; PreActResNet-18 in the authors' code**" \
        in text
    assert "| paper | 51.70 | 47.51 |" in text          # the paper's row beside ours
    assert ("Commit: abc1234. Machine: Test CPU (flags not recorded), 2 cores, TensorFlow 2.21.0. "
            "Threads: not recorded in run.json.") in text
    assert "Wall time: 28.0 min in all, 2.0 min to 6.0 min a run" in text
    assert "| Flying Bird | - | 57.00 / 55.00 / 20.00 | - |" in text   # per seed


def test_block_pairs_sparse_rows_with_small_dense_the_capacity_control(tmp_path):
    runs = dict(RUNS, small_dense={1: (55.0, 56.0, 20.0), 2: (57.0, 54.0, 19.0),
                                   3: (58.0, 55.5, 25.0)})
    text = committed.block(_folder(tmp_path / "res", runs))
    assert "Paired against Small Dense at the same sparsity" in text
    table = text[text.index("Paired against Small Dense"):]
    # FB+ - Small Dense per seed, RA final: 58-56, 57-54, 57-55.5 = 2, 3, 1.5.
    low, high = stats.t.interval(0.95, 2, loc=6.5 / 3, scale=stats.sem([2.0, 3.0, 1.5]))
    p = stats.ttest_rel([58, 57, 57], [56, 54, 55.5]).pvalue
    assert f"**+2.17 [{low:+.2f}, {high:+.2f}], p={p:.3f}**" in table   # resolved: bold
    # RGG: 18-20, 16-19, 21-25 = -2, -3, -4 -> mean -3.
    assert "| 80 | Flying Bird+ | 3 |" in table and "-3.00 [" in table
    # Neither dense nor Small Dense itself is paired against Small Dense.
    assert "| 0 | Baseline |" not in table and "| 80 | Small Dense |" not in table
    # FB (seed 2 only): 57-57, 55-54, 20-19.
    assert "| 80 | Flying Bird | 1 | +0.00 (n/a, n=1) | +1.00 (n/a, n=1) | +1.00 (n/a, n=1) |" \
        in table
    # Without a Small Dense run there is no such table.
    assert "Paired against Small Dense" not in committed.block(_folder(tmp_path / "r2"))


def test_empty_folder_says_no_run_and_gives_the_command(tmp_path):
    text = committed.block(str(tmp_path / "nothing"))
    assert "No run of this setting is committed" in text
    assert "--seeds=10 --rows=dense,small_dense,fb,fb_plus --results_dir=" in text


def test_update_replaces_only_the_block_and_refuses_a_file_without_markers(tmp_path):
    folder = _folder(tmp_path / "res")
    md = tmp_path / "R.md"
    begin = committed.BEGIN.format(folder=folder, target=str(md))
    md.write_text(f"# Title\n\nprose before\n\n{begin}\nold text\n"
                  f"{committed.END.format(folder=folder)}\n\nprose after\n")
    committed.update(str(md), [folder])
    text = md.read_text()
    assert text.startswith("# Title\n\nprose before\n\n") and text.endswith("\n\nprose after\n")
    assert "old text" not in text and "Flying Bird+" in text
    assert committed.blocks(str(md))[folder] == committed.block(folder, str(md))
    again = committed.update(str(md))                  # idempotent
    assert again == text
    plain = tmp_path / "plain.md"
    plain.write_text("no markers\n")
    with pytest.raises(committed.ResultsFolderError, match=r"has no generated block for .*res"):
        committed.update(str(plain), [folder])
    assert plain.read_text() == "no markers\n"


def test_bad_folders_are_named(tmp_path):
    folder = _folder(tmp_path / "res")
    os.remove(os.path.join(folder, "reproduce.json"))
    with pytest.raises(committed.ResultsFolderError, match=r"holds runs but no reproduce.json"):
        committed.block(folder)
    other = _folder(tmp_path / "other", {"lottery": {1: (1.0, 1.0, 1.0)}})
    with pytest.raises(committed.ResultsFolderError, match=r"rows \['lottery'\] that table 1"):
        committed.block(other)
    broken = _folder(tmp_path / "broken")
    with open(os.path.join(broken, "dense", "seed1", "results.json"), "w") as f:
        f.write("{not json")
    with pytest.raises(committed.ResultsFolderError, match=r"seed1/results.json' cannot be read"):
        committed.block(broken)


def test_report_command_updates_without_tensorflow(tmp_path):
    folder = _folder(tmp_path / "res")
    md = tmp_path / "R.md"
    md.write_text(committed.BEGIN.format(folder=folder, target=str(md)) + "\n\n" +
                  committed.END.format(folder=folder) + "\n")
    code = ("import sys\nfrom launch import report\n"
            f"report.main(['--results={folder}', '--update={md}'])\n"
            "heavy = [m for m in ('tensorflow', 'keras', 'gin') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Flying Bird+" in md.read_text()
    proc = subprocess.run([sys.executable, "-m", "launch.report", f"--update={md}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "--update needs --results" in proc.stderr


def test_the_setting_table_figures():
    """RESULTS.md's "What is trained" numbers: the test split's size and the weight counts."""
    from birds_tf.models import small_dense
    with open(RESULTS_MD) as f:
        text = f.read()
    dense = small_dense.kernel_params((8, 16, 32, 64), 1, 10)
    assert dense == 175_048 and "175k conv + fc weights dense, ~35k at 80% sparsity" in text
    assert round(0.2 * dense / 1000) == 35
    narrow = small_dense.widths_for_density(0.2, 1, 10)
    narrow = tuple(max(1, round(w * 8 / 64)) for w in narrow)
    assert round(small_dense.kernel_params(narrow, 1, 10) / dense, 2) == 0.20   # "~20%"
    from birds_tf.data import animals
    assert len(animals.fixed_split()[2][1]) == 1944 and "(1,944 images)" in text


def test_reproduced_table_shows_each_rows_measured_seconds_beside_its_flops():
    """results.json's ``seconds``: mean ± sample std over seeds and % of the dense row's mean,
    in the Markdown row next to the FLOPs and in the CSV; the paper's line has none."""
    import csv
    import io
    from birds_tf.metrics import reproduction
    from launch import reproduce
    rows = [r for r in reproduce.table_rows("1") if r.row in ("dense", "fb_plus")]
    runs = {"dense": [(100.0, 2e15), (120.0, 2e15)], "fb_plus": [(60.0, 5e14), (66.0, 5e14)]}
    results = {row: [{"seed": k, "ra_best": 50.0, "ra_final": 49.0, "rgg_final": 20.0,
                      "seconds": s, "training_flops": f, "inference_flops": 1e9}
                     for k, (s, f) in enumerate(seeds, 1)] for row, seeds in runs.items()}
    summary = reproduction.summarize(rows, results)
    md = reproduction.markdown(summary, "t")
    header = next(line for line in md.splitlines() if "Training FLOPs" in line).split(" | ")
    assert header.index("Seconds (% dense)") == header.index("Inference FLOPs (% dense)") + 1
    fb = next(line for line in md.splitlines() if line.startswith("| 80 | Flying Bird+"))
    # 63 ± std(60, 66) = 4.24; 63 / 110 = 57%; training FLOPs 5e14 / 2e15 = 25%.
    assert "| 5e+14 (25%) | 1e+09 (100%) | 63 ± 4 (57%) |" in fb
    assert "| 110 ± 14 (100%) |" in md
    table = {r["row"]: r for r in csv.DictReader(io.StringIO(reproduction.csv_text(summary)))}
    assert float(table["fb_plus"]["seconds_mean"]) == 63.0
    assert float(table["fb_plus"]["seconds_std"]) == pytest.approx(18 ** 0.5)
    assert float(table["fb_plus"]["seconds_pct_mean"]) == pytest.approx(100 * 63 / 110)
    assert table["fb_plus"]["seconds_paper"] == ""


def test_search_block_recomputes_the_signs_from_the_kept_curves(tmp_path):
    """The candidate table: falls and gaps by hand from hand-made validation curves."""
    folder = tmp_path / "setting_search"
    curves = {1: [10.0, 60.0, 60.0, 60.0, 60.0, 60.0, 40.0],
              2: [12.0, 40.0, 44.0, 46.0, 45.0, 47.0, 47.0]}
    seeds = [{"train_ra": 80.0 + k, "val_ra_gap": 60.0 - k, "val_ra_curve": c,
              "wall_seconds": 60.0 * k} for k, c in curves.items()]
    (folder / "c1_x").mkdir(parents=True)
    (folder / "c1_x" / "choice.json").write_text(json.dumps(
        {"candidate": "gin/offline/search/c1_x.gin", "met": None,
         "setting": {"max_train": 256, "arch_kwargs": {"width": 8}, "epochs": 7,
                     "milestones": [2, 4], "train_eps": 0.1},
         "seeds": seeds}))
    md = committed.block(str(folder))
    row = [c.strip() for c in
           next(line for line in md.splitlines() if "c1_x.gin" in line).split("|")[1:-1]]
    assert row[1:6] == ["256", "8", "7 (2, 4)", "0.1", "2"]
    assert row[6] == "81.50 ± 0.71"
    assert row[7] == "53.50 ± 9.19" and row[8] == "43.50 ± 4.95"     # (60, 47), (40, 47)
    # 5-epoch moving averages: seed 1 50, 60, 56 -> fall 4; seed 2 37.4, 44.4, 45.8 -> 0.
    assert row[9] == f"2.00 ± {stats.tstd([4.0, 0.0]):.2f}"
    assert row[10] == f"10.00 ± {stats.tstd([20.0, 0.0]):.2f}"      # raw: 60 - 40, 47 - 47
    assert row[11] == f"23.00 ± {stats.tstd([22.0, 24.0]):.2f}"     # 81 - 59, 82 - 58
    assert row[12] == "no"                                          # gap >= 15 but fall < 3
    assert row[13] == "1.5 ± 0.7"
    assert "no test number" in md


def test_a_row_not_in_the_paper_is_paired_against_the_method_it_varies(tmp_path):
    """fb_plus_channel_fast - fb_plus per seed (RA final -2, -1, -3): scipy's paired t test as the
    reference; paper rows get no such table."""
    runs = {"dense": RUNS["dense"], "fb_plus": RUNS["fb_plus"],
            "fb_plus_channel_fast": {1: (57.0, 56.0, 20.0), 2: (57.0, 56.0, 19.0),
                                     3: (59.0, 54.0, 22.0)}}
    text = committed.block(_folder(tmp_path / "res", runs))
    d = [-2.0, -1.0, -3.0]
    low, high = stats.t.interval(0.95, 2, loc=-2.0, scale=stats.sem(d))
    p = stats.ttest_rel([56, 56, 54], [58, 57, 57]).pvalue
    assert "| Sparsity (%) | Setting | pairs | RA best: row - Flying Bird+ |" in text
    assert "| 80 | Flying Bird+ (channel, fast) | 3 | **-1.67 [" in text    # RA best -2, -1, -2
    assert f"-2.00 [{low:+.2f}, {high:+.2f}], p={p:.3f}" in text
    base_table = text[text.index("RA best: row - Flying Bird+"):]
    assert "| 80 | Flying Bird+ | " not in base_table.split("Per seed")[0]


def test_run_record_keeps_the_thread_count(monkeypatch):
    """Trajectories depend on the thread count, so run.json records it and the block names it."""
    from launch import reproduce
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "1")
    monkeypatch.delenv("TF_NUM_INTEROP_THREADS", raising=False)
    record = reproduce.run_record(1.0)
    assert record["threads"]["TF_NUM_INTRAOP_THREADS"] == "1"
    assert record["threads"]["TF_NUM_INTEROP_THREADS"] is None
    assert committed._threads(record) == "intra-op 1 / inter-op TensorFlow's default"
    assert committed._threads({"commit": "abc"}) == "not recorded in run.json"


def test_run_record_names_the_cpu_kernels_and_the_block_tells_machines_apart(tmp_path,
                                                                             monkeypatch):
    """Two VMs named "AMD EPYC", one with AVX-512 and one without, train at different speeds
    and sums: run.json keeps the flags and the block lists the two machines apart."""
    from birds_tf.utils import machine
    from launch import reproduce
    info = tmp_path / "cpuinfo"
    info.write_text("model name : AMD EPYC\nflags : fpu sse2 avx avx2 fma avx512f avx512_bf16\n")
    assert machine.cpu_flags(str(info)) == ["avx2", "avx512_bf16", "avx512f"]
    assert machine.cpu_flags(str(tmp_path / "missing")) == []
    monkeypatch.setattr(machine, "cpu_flags", lambda: ["avx2"])
    assert reproduce.run_record(1.0)["cpu_flags"] == ["avx2"]
    folder = _folder(tmp_path / "res")
    record = tmp_path / "res" / "fb_plus" / "seed2" / "run.json"
    run = json.loads(record.read_text())
    record.write_text(json.dumps(dict(run, cpu_flags=["avx2", "avx512f"])))
    text = committed.block(folder)
    assert ("Machines: Test CPU (avx2, avx512f), 2 cores, TensorFlow 2.21.0; "
            "Test CPU (flags not recorded), 2 cores, TensorFlow 2.21.0.") in text


def test_run_record_flags_code_changes_not_the_results_folder(tmp_path, monkeypatch):
    """A reproduce run adding a row rewrites the committed results folder's reproduce.json before
    it trains; that is data, not code, so it must not mark the run "with uncommitted changes"."""
    import subprocess
    from launch import reproduce

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)
    git("init", "-q")
    (tmp_path / "results" / "table").mkdir(parents=True)
    (tmp_path / "results" / "table" / "reproduce.json").write_text("{}\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.chdir(tmp_path)
    # the benchmarks' header says the same of the checkout they run in
    from benchmarks import pgd_at
    monkeypatch.setattr(pgd_at, "ROOT", str(tmp_path))
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tmp_path, check=True,
                          capture_output=True, text=True).stdout.strip()
    assert reproduce.run_record(1.0)["uncommitted_changes"] is False
    (tmp_path / "results" / "table" / "reproduce.json").write_text('{"rows": ["new"]}\n')
    assert reproduce.run_record(1.0)["uncommitted_changes"] is False
    assert pgd_at.commit() == head
    (tmp_path / "code.py").write_text("x = 2\n")
    assert reproduce.run_record(1.0)["uncommitted_changes"] is True
    assert pgd_at.commit() == head + "+changes"


def test_numerics_check_backs_results_md():
    """results/numerics_check: the one-thread rerun equals the committed run but for seconds, and
    RESULTS.md quotes the default-thread runs' numbers as they are."""
    def load(path):
        with open(os.path.join(ROOT, path)) as f:
            return json.load(f)
    committed_run = load("results/table1_offline/dense/seed1/results.json")
    rerun = load("results/numerics_check/dense_seed1_1thread/results.json")
    timing = {k for k in committed_run if k.endswith("seconds")}
    assert {k: v for k, v in committed_run.items() if k not in timing} == \
        {k: v for k, v in rerun.items() if k not in timing}
    with open(os.path.join(ROOT, "results/table1_offline/dense/seed1/metrics.csv")) as f:
        a = [line.rsplit(",", 1)[0] for line in f]
    with open(os.path.join(ROOT, "results/numerics_check/dense_seed1_1thread/metrics.csv")) as f:
        b = [line.rsplit(",", 1)[0] for line in f]
    assert a == b                                   # every column but the last (seconds)
    text = " ".join(open(RESULTS_MD).read().split())
    for row, name in (("dense", "RA final"), ("fb_plus", "Flying Bird+ seed 1 at")):
        old = load(f"results/table1_offline/{row}/seed1/results.json")["ra_final"]
        new = load(f"results/numerics_check/{row}_seed1_default_threads/results.json")["ra_final"]
        assert f"{new:.2f} instead of {old:.2f} ({new - old:+.2f})" in text, row
