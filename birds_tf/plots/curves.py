"""Figures drawn from a workdir's files alone (no model run): robust accuracy curves (Figure 1),
Flying Bird+ density over time (Figure A11), layer-wise density (Figure A10) and the similarity
of masks between epochs (Figure A8)."""
import os

import numpy as np

from birds_tf.plots import common
from birds_tf.utils import workdir as wd
from birds_tf.utils.records import load_mask_file


def _history(workdir):
    """``metrics.csv``'s rows of the run at ``workdir``, after checking it is one (the message
    names the path)."""
    return wd.Workdir(wd.check(workdir, (wd.Workdir.METRICS_CSV,))).read_metrics()


def accuracy_figure(workdirs, out=None):
    """Robust train (top) and test (bottom) accuracy per epoch; dense runs dash-dot (Figure 1)."""
    fig, (top, bottom) = common.figure(7.0, 7.0, nrows=2, sharex=True)
    for path in workdirs:
        res, rows = wd.results(path), _history(path)
        epochs = [row["epoch"] for row in rows]
        style = "-." if res.get("method") == "dense" else "-"
        label = common.label(path, res)
        top.plot(epochs, [row.get("train_ra", np.nan) for row in rows], style, label=label)
        bottom.plot(epochs, [row.get("test_ra", np.nan) for row in rows], style, label=label)
    top.set_ylabel("Robust train accuracy (%)")
    bottom.set_ylabel("Robust test accuracy (%)")
    bottom.set_xlabel("Epoch")
    top.legend(fontsize=8)
    top.set_title("Robust train / test accuracy (PGD)")
    path = os.path.join(common.out_dir(workdirs[0], out), "accuracy.png")
    return [common.save(fig, path, workdirs)]


def _total_weights(path, res, rows):
    files = wd.Workdir(path).mask_files()
    if files:
        return sum(m.size for m in load_mask_file(files[0][1]).values())
    events = res.get("mask_update_events") or []
    for row in rows:
        last = [e for e in events if int(e["epoch"]) == row["epoch"]]
        if last and row.get("density"):
            return float(last[-1]["nnz_after"]) / float(row["density"])
    return None


def density_figure(workdir, out=None):
    """Global density per iteration with the prune-more (red) / grow-more (green) epochs (A11)."""
    res, rows = wd.results(workdir), _history(workdir)
    events = res.get("mask_update_events") or []
    fig, ax = common.figure()
    ax.plot([row["epoch"] for row in rows], [100 * row.get("density", 1.0) for row in rows],
            "o", color="C0", ms=4, label="density at epoch end")
    total = _total_weights(workdir, res, rows)
    steps = (res.get("flops") or {}).get("steps_per_epoch")
    if events and total:
        xs = [0.0]
        ys = [100 * float(events[0]["nnz_before"]) / total]
        for event in events:
            xs.append(float(event["step"]) / steps if steps else float(event["epoch"]))
            ys.append(100 * float(event["nnz_after"]) / total)
        xs.append(float(rows[-1]["epoch"]))
        ys.append(ys[-1])
        ax.plot(xs, ys, drawstyle="steps-post", color="C0", label="density (mask updates)")
    for key, color, name in (("prune_more", "red", "prune more"),
                             ("grow_more", "green", "grow more")):
        starts = [row["epoch"] - 1 for row in rows if row.get(key)]
        for i, x in enumerate(starts):
            ax.axvline(x, color=color, ls=":", lw=1.2, label=name if i == 0 else None)
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Density (%)")
    twin = ax.twinx()
    twin.plot([row["epoch"] for row in rows], [row.get("test_ra", np.nan) for row in rows],
              color="C1", alpha=0.6, label="test RA")
    twin.set_ylabel("Robust test accuracy (%)")
    ax.legend(loc="upper left", fontsize=8)
    twin.legend(loc="upper right", fontsize=8)
    ax.set_title(f"Density over training: {common.label(workdir, res)}")
    path = os.path.join(common.out_dir(workdir, out), "density.png")
    return [common.save(fig, path, [workdir])]


def _layer_densities(path):
    """[(label suffix, {layer: density})]: initial and final masks when saved."""
    files = wd.Workdir(path).mask_files()
    if files:
        picks = [("initial", files[0][1]), ("final", files[-1][1])] if len(files) > 1 else \
            [("final", files[-1][1])]
        return [(name, {k: float(v.mean()) for k, v in load_mask_file(p).items()})
                for name, p in picks]
    rows = _history(path)
    per_layer = {k[len("density/"):]: v for k, v in rows[-1].items()
                 if k.startswith("density/")}
    if per_layer:
        return [("final", per_layer)]
    from birds_tf.sparsity import masks as masks_lib
    return [("final", masks_lib.densities(wd.load_model(path, "final")))]


def layer_density_figure(workdirs, out=None):
    """Density of every masked layer, input to output, initial and final masks (Figure A10)."""
    series = []
    for path in workdirs:
        label = common.label(path)
        series += [(f"{label} {name}", dens) for name, dens in _layer_densities(path)]
    layers = list(series[0][1])
    fig, ax = common.figure(max(7.0, 0.35 * len(layers) + 2), 5.0)
    width = 0.8 / len(series)
    x = np.arange(len(layers))
    for i, (name, dens) in enumerate(series):
        ax.bar(x + i * width, [100 * dens.get(layer, np.nan) for layer in layers], width,
               label=name)
    ax.set_xticks(x + 0.4 - width / 2)
    ax.set_xticklabels(layers, rotation=90, fontsize=7)
    ax.set_ylabel("Density (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8)
    ax.set_title("Layer-wise density")
    path = os.path.join(common.out_dir(workdirs[0], out), "layer_density.png")
    return [common.save(fig, path, workdirs)]


def mask_similarity(mask_dicts, chunk=1 << 16):
    """1 - normalized Hamming distance between every pair of masks (You et al. 2020).

    ``mask_dicts``: a list of ``{layer: 0/1 array}``; computed in chunks so long runs of large
    models fit in memory.
    """
    names = sorted(mask_dicts[0])
    packed = [np.packbits(np.concatenate([np.asarray(m[n]).reshape(-1) > 0 for n in names]))
              for m in mask_dicts]
    total = sum(np.asarray(mask_dicts[0][n]).size for n in names)
    gram = np.zeros((len(packed), len(packed)))
    for start in range(0, packed[0].size, chunk):
        block = np.stack([np.unpackbits(p[start:start + chunk]) for p in packed])
        block = block.astype(np.float32)
        gram += block @ block.T
    counts = np.diag(gram)
    hamming = counts[:, None] + counts[None, :] - 2 * gram
    return 1.0 - hamming / total


def mask_similarity_figure(workdir, out=None):
    """Heatmap of mask similarity between the epochs' masks (Figure A8)."""
    files = wd.Workdir(workdir).mask_files()
    if len(files) < 2:
        raise ValueError(f"{os.fspath(workdir)!r} has fewer than two per-epoch masks in masks/ "
                         "(only sparse runs save masks/epoch_XXX.npz); no similarity to plot.")
    sim = mask_similarity([load_mask_file(p) for _, p in files])
    epochs = [e for e, _ in files]
    fig, ax = common.figure(6.0, 5.0)
    image = ax.imshow(sim, origin="lower", cmap="viridis",
                      extent=(epochs[0] - 0.5, epochs[-1] + 0.5, epochs[0] - 0.5,
                              epochs[-1] + 0.5))
    fig.colorbar(image, ax=ax, label="similarity (1 - normalized Hamming)")
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Epoch")
    ax.set_title(f"Mask similarity between epochs: {common.label(workdir)}")
    path = os.path.join(common.out_dir(workdir, out), "mask_similarity.png")
    return [common.save(fig, path, [workdir])]
