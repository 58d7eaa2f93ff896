"""Committed runs (``results/<table>_<scale>/``) -> RESULTS.md's generated blocks.

Why: a number in RESULTS.md must be backed by a committed file. ``launch.reproduce
--results_dir=results/table1_offline`` keeps each run's small files there; this module turns the
folder into Markdown (the table with the paper's rows, the paired statistics, the per-seed
numbers, the machines and commits the runs came from) and replaces the text between a block's
markers in a Markdown file, so prose and data cannot drift (tests/test_results_md.py regenerates
every block and compares). JSON and CSV only: TensorFlow is never imported.

A block in a Markdown file is::

  <!-- BEGIN GENERATED results/table1_offline: python -m launch.report --results=... -->
  ...generated text...
  <!-- END GENERATED results/table1_offline -->
"""
import json
import os
import re

from birds_tf.utils.machine import KERNEL_FLAGS

BEGIN = "<!-- BEGIN GENERATED {folder}: python -m launch.report --results={folder} " \
        "--update={target} -->"
END = "<!-- END GENERATED {folder} -->"
_BLOCK = re.compile(r"<!-- BEGIN GENERATED (?P<folder>\S+): [^\n]*-->\n(?P<body>.*?)"
                    r"<!-- END GENERATED (?P=folder) -->", re.S)
# What to type when a folder holds no run yet (the new offline Table 1, RESULTS.md).
DEFAULT_COMMAND = ("python -m launch.reproduce --table=1 --scale=offline --seeds=10 "
                   "--rows=dense,small_dense,fb,fb_plus --results_dir={folder}")


class ResultsFolderError(ValueError):
    """A results folder or a Markdown file that cannot be used; the message names it."""


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ResultsFolderError(f"{path!r} cannot be read as JSON ({e}); restore it from git "
                                 "or delete its run folder and rerun the command.") from None


def load(folder):
    """``(marker dict or None, [(row, seed, results, config, run record)])`` in row/seed order."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ResultsFolderError(f"--results {folder!r} is a file, not a results folder.")
    marker_path = os.path.join(folder, "reproduce.json")
    marker = _read_json(marker_path) if os.path.exists(marker_path) else None
    from birds_tf.utils.workdir import Workdir
    runs = []
    if not os.path.isdir(folder):
        return marker, runs
    for row in sorted(os.listdir(folder)):
        row_dir = os.path.join(folder, row)
        if not os.path.isdir(row_dir):
            continue
        for name in os.listdir(row_dir):
            match = re.fullmatch(r"seed(\d+)", name)
            run = Workdir(os.path.join(row_dir, name))
            path = run.results_json
            if not match or not os.path.exists(path):
                continue
            extra = [run.config_json, run.run_json]
            runs.append((row, int(match.group(1)), _read_json(path),
                         *(_read_json(p) if os.path.exists(p) else {} for p in extra)))
    if runs and marker is None:
        raise ResultsFolderError(f"{folder!r} holds runs but no reproduce.json; it was not "
                                 "written by launch.reproduce --results_dir.")
    return marker, sorted(runs, key=lambda r: (r[0], r[1]))


def _seconds(value):
    return f"{value / 60:.1f} min" if value is not None else "?"


def load_search(folder):
    """``[(candidate folder name, choice.json)]`` of ``launch.setting_search``'s kept records."""
    if not os.path.isdir(folder):
        return []
    return [(name, _read_json(os.path.join(folder, name, "choice.json")))
            for name in sorted(os.listdir(folder))
            if os.path.exists(os.path.join(folder, name, "choice.json"))]


def _cell(values, digits=2):
    from birds_tf.metrics.reproduction import mean_std
    mean, std = mean_std(values)
    return "-" if mean is None else f"{mean:.{digits}f}" + ("" if std is None else
                                                            f" ± {std:.{digits}f}")


def search_block(folder):
    """The candidate table of the setting search, recomputed from the kept validation curves:
    fall raw = highest per-epoch validation RA - the last; fall smoothed =
    ``overfitting.smoothed_drop`` of the curve; gap = final train RA - final validation RA under
    the final attack. Means ± sample std over seeds."""
    from birds_tf.metrics import overfitting
    found = load_search(folder)
    if not found:
        return (f"No candidate record is kept under `{folder}/` yet (`python -m "
                "launch.setting_search --candidate=...` writes one).\n")
    head = ["candidate", "training images", "width", "epochs (lr x0.1 at)", "eps", "seeds",
            "train RA", "val RA best", "val RA final", "fall smoothed", "fall raw",
            "gap (train - val)", "both signs", "wall min a run"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, choice in found:
        st, seeds = choice["setting"], choice["seeds"]
        curves = [sd["val_ra_curve"] for sd in seeds]
        best = [max(c) for c in curves]
        final = [c[-1] for c in curves]
        raw = [b - f for b, f in zip(best, final)]
        smooth = [overfitting.smoothed_drop(c) for c in curves]
        gap = [sd["train_ra"] - sd["val_ra_gap"] for sd in seeds]
        met = overfitting.meets(sum(gap) / len(gap), sum(smooth) / len(smooth))
        width = (st.get("arch_kwargs") or {}).get("width", "?")
        milestones = ", ".join(str(m) for m in st.get("milestones") or ())
        walls = [sd["wall_seconds"] for sd in seeds if sd.get("wall_seconds") is not None]
        out.append("| " + " | ".join([
            f"`{choice['candidate']}`", f"{st.get('max_train')}", f"{width}",
            f"{st.get('epochs')} ({milestones})", f"{st.get('train_eps'):g}", f"{len(seeds)}",
            _cell([sd["train_ra"] for sd in seeds]), _cell(best), _cell(final), _cell(smooth),
            _cell(raw), _cell(gap), "yes" if met else "no",
            _cell([w / 60 for w in walls], 1) if walls else "?"]) + " |")
    out += ["", f"From `{folder}/*/choice.json` (validation numbers and curves only; no test "
            f"number is kept). Both signs: mean gap >= {overfitting.MIN_RGG:g} and mean smoothed "
            f"fall >= {overfitting.MIN_DROP:g} points. Wall: each run's own training seconds, "
            "on a machine that may have been shared (load is not recorded). Regenerate: `python -m launch.report "
            f"--results={folder} --update=RESULTS.md`."]
    return "\n".join(out) + "\n"


def block(folder, target="RESULTS.md"):
    """The generated Markdown for one results folder (no markers)."""
    if not os.path.exists(os.path.join(folder, "reproduce.json")) and load_search(folder):
        return search_block(folder)
    marker, runs = load(folder)
    command = DEFAULT_COMMAND.format(folder=folder)
    if not runs:
        return (f"No run of this setting is committed under `{folder}/` yet, so there is no "
                "table here. To make it (resumable; commit the folder when done):\n\n"
                f"```\n{command}\npython -m launch.report --results={folder} "
                f"--update={target}\n```\n")
    from birds_tf.metrics import reproduction
    from . import reproduce
    key, scale = marker["table"], marker["scale"]
    paper_rows = reproduce.table_rows(key)
    known = {r.row for r in paper_rows}
    unknown = sorted({r[0] for r in runs} - known)
    if unknown:
        raise ResultsFolderError(f"{folder!r} holds rows {unknown} that table {key} does not "
                                 "have; remove them or fix reproduce.json.")
    results = {}
    for row, seed, res, _, _ in runs:
        results.setdefault(row, []).append(dict(res, seed=seed))
    selected = [r for r in paper_rows if r.row in results]
    summary = reproduction.summarize(selected, results)
    seeds = max(len(v) for v in results.values())
    trained = None if scale == "paper" else reproduction.describe_config(runs[0][3] or {})
    out = [reproduction.markdown(summary, reproduction.title(key, scale, seeds), trained), ""]
    names = {r.row: r.setting for r in paper_rows}
    out += ["Per seed, RA best / RA final / RGG (test RA as in the table; RGG = train RA - "
            "test RA of the final model):", "",
            "| row | " + " | ".join(f"seed {k}" for k in sorted({r[1] for r in runs})) + " |",
            "|---|" + "---|" * len({r[1] for r in runs})]
    all_seeds = sorted({r[1] for r in runs})
    for row in [r.row for r in selected]:
        by_seed = {s: res for r, s, res, _, _ in runs if r == row}
        cells = [f"{by_seed[s]['ra_best']:.2f} / {by_seed[s]['ra_final']:.2f} / "
                 f"{by_seed[s].get('rgg_final', float('nan')):.2f}" if s in by_seed else "-"
                 for s in all_seeds]
        out.append(f"| {names[row]} | " + " | ".join(cells) + " |")
    records = [r[4] for r in runs]
    commits = sorted({str(r.get("commit")) + (" (with uncommitted changes)"
                                              if r.get("uncommitted_changes") else "")
                      for r in records})
    machines = sorted({f"{r.get('cpu')}{_cpu_flags(r)}, {r.get('cpu_count')} cores, "
                       f"TensorFlow {r.get('tensorflow')}" for r in records})
    threads = sorted({_threads(r) for r in records})
    walls = [r.get("wall_seconds") for r in records if r.get("wall_seconds") is not None]
    out += ["", f"From {len(runs)} committed runs in `{folder}/` (each run's results.json, "
            "metrics.csv, config and run.json). "
            f"Commit{'s' if len(commits) > 1 else ''}: {', '.join(commits)}. "
            f"Machine{'s' if len(machines) > 1 else ''}: {'; '.join(machines)}. "
            f"Threads: {', '.join(threads)}. "
            + (f"Wall time: {_seconds(sum(walls))} in all, {_seconds(min(walls))} to "
               f"{_seconds(max(walls))} a run (machine shared or idle is not recorded)."
               if walls else "Wall time: not recorded."),
            "", f"Regenerate: `python -m launch.report --results={folder} --update={target}`."]
    return "\n".join(out) + "\n"


def _cpu_flags(record):
    """" (avx2, avx512f)": the model name alone hides the kernels a run took (birds_tf.utils
    .machine); runs before the field say "flags not recorded"."""
    if "cpu_flags" not in record:
        return " (flags not recorded)"
    return f" ({', '.join(record['cpu_flags']) or 'none of ' + '/'.join(KERNEL_FLAGS)})"


def _threads(record):
    """A run's thread count as run.json recorded it (older runs did not)."""
    t = record.get("threads")
    if not t:
        return "not recorded in run.json"
    intra = t.get("TF_NUM_INTRAOP_THREADS") or t.get("intra_op_set") or "TensorFlow's default"
    inter = t.get("TF_NUM_INTEROP_THREADS") or t.get("inter_op_set") or "TensorFlow's default"
    return f"intra-op {intra} / inter-op {inter}"


def update(target, folders=None):
    """Replace every generated block of ``target`` (or only those of ``folders``); returns the
    new text after writing it. Raises ``ResultsFolderError`` before writing anything."""
    try:
        with open(target) as f:
            text = f.read()
    except OSError as e:
        raise ResultsFolderError(f"--update {target!r} cannot be read ({e}).") from None
    found = [m.group("folder") for m in _BLOCK.finditer(text)]
    wanted = list(folders) if folders else found
    missing = [f for f in wanted if f not in found]
    if missing:
        example = BEGIN.format(folder=missing[0], target=target)
        raise ResultsFolderError(
            f"{target!r} has no generated block for {', '.join(missing)}; add the two lines\n"
            f"  {example}\n  {END.format(folder=missing[0])}\nwhere the table should go.")
    new = {folder: block(folder, target) for folder in wanted}  # every error before writing
    csvs = {folder: table_csv(folder) for folder in wanted
            if os.path.exists(os.path.join(folder, "reproduce.json"))}

    def replace(match):
        folder = match.group("folder")
        if folder not in new:
            return match.group(0)
        return (BEGIN.format(folder=folder, target=target) + "\n" + new[folder]
                + END.format(folder=folder))
    text = _BLOCK.sub(replace, text)
    from birds_tf.utils.records import atomic_write_text
    for folder, csv in csvs.items():
        if csv is not None:  # the table as CSV, from every committed run (not one sweep's rows)
            atomic_write_text(os.path.join(folder, "table.csv"), csv)
    atomic_write_text(target, text)
    return text


def table_csv(folder):
    """``table.csv`` of a reproduce results folder, from all its committed runs (None if none)."""
    marker, runs = load(folder)
    if not runs:
        return None
    from birds_tf.metrics import reproduction
    from . import reproduce
    results = {}
    for row, seed, res, _, _ in runs:
        results.setdefault(row, []).append(dict(res, seed=seed))
    selected = [r for r in reproduce.table_rows(marker["table"]) if r.row in results]
    return reproduction.csv_text(reproduction.summarize(selected, results))


def blocks(target):
    """``{folder: body}`` of every generated block in the Markdown file ``target``."""
    with open(target) as f:
        return {m.group("folder"): m.group("body") for m in _BLOCK.finditer(f.read())}
