"""2-D loss landscape around a trained model (paper Figures 3 and 5; Li et al., 2018).

Two random directions, each filter rescaled to the norm of the matching filter of the weights
("filter normalization"); biases and batch-norm parameters are not moved, and a masked kernel's
direction is masked too, so a sparse model is probed inside its own sparse subspace. The loss is
the clean or the PGD (robust) cross-entropy on a few batches, BN in inference mode; PGD starts
from the clean image (no random start) so the surface is deterministic.
"""
import os

import numpy as np
import tensorflow as tf

from birds_tf.attacks import pgd
from birds_tf.experiment.train_eval import Config
from birds_tf.plots import common
from birds_tf.training.adversarial import cross_entropy
from birds_tf.utils import workdir as wd


def _kernel_layers(net):
    import keras

    from birds_tf.metrics.flop_count import KERNEL_LAYERS
    seen, out = set(), []
    for layer in net._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, KERNEL_LAYERS) and not isinstance(layer, keras.Model) and \
                id(layer) not in seen:
            seen.add(id(layer))
            out.append(layer)
    return out


def _mask(layer):
    mask = getattr(layer, "mask", None)
    return np.ones(layer.kernel.shape, np.float32) if mask is None else np.asarray(mask.numpy())


def filter_normalized_direction(net, rng):
    """One random direction: ``{layer name: array}`` over the conv/dense kernels."""
    direction = {}
    for layer in _kernel_layers(net):
        mask = _mask(layer)
        weights = np.asarray(layer.kernel.numpy()) * mask
        d = rng.standard_normal(weights.shape).astype(np.float32) * mask
        axes = tuple(range(weights.ndim - 1))  # one filter per output channel (last axis)
        w_norm = np.sqrt((weights ** 2).sum(axis=axes, keepdims=True))
        d_norm = np.sqrt((d ** 2).sum(axis=axes, keepdims=True))
        direction[layer.name] = d * w_norm / (d_norm + 1e-10)
    return direction


def loss_surface(net, batches, grid=11, span=1.0, robust=True, attack=None, seed=0,
                 directions=None):
    """``(coords, losses)``: the mean loss at ``w + a d1 + b d2`` for ``a, b`` in ``coords``.

    ``batches``: a list of (images in [0, 1], labels); ``attack``: an ``AttackConfig`` for the
    robust loss (PGD eval settings of the run).
    """
    if robust and attack is None:
        raise ValueError("The robust loss needs an attack (eps, step_size, steps).")
    rng = np.random.default_rng(seed)
    d1, d2 = directions or (filter_normalized_direction(net, rng),
                            filter_normalized_direction(net, rng))
    layers = _kernel_layers(net)
    originals = {layer.name: np.asarray(layer.kernel.numpy()) for layer in layers}

    @tf.function(reduce_retracing=True)
    def batch_loss(x, y):
        if robust:
            x = pgd.pgd_linf_graph(net, x, y, attack.eps, attack.step_size, attack.steps,
                                   random_start=False, training=False)
        return tf.reduce_sum(cross_entropy(y, tf.cast(net(x, training=False), tf.float32)))

    coords = np.linspace(-span, span, int(grid))
    losses = np.zeros((len(coords), len(coords)))
    count = sum(int(np.shape(y)[0]) for _, y in batches)
    try:
        for i, b in enumerate(coords):
            for j, a in enumerate(coords):
                for layer in layers:
                    layer.kernel.assign(originals[layer.name] + a * d1[layer.name] +
                                        b * d2[layer.name])
                total = sum(float(batch_loss(tf.convert_to_tensor(x, tf.float32),
                                             tf.cast(tf.reshape(y, [-1]), tf.int32)))
                            for x, y in batches)
                losses[i, j] = total / count
    finally:
        for layer in layers:
            layer.kernel.assign(originals[layer.name])
    return coords, losses


def landscape_figure(workdir, out=None, which="final", grid=11, span=1.0, batches=2,
                     robust=True, split="train", seed=0):
    """Contour and surface of the loss around the ``which`` checkpoint; also saves the grid.

    ``split``: "train" (the un-augmented training split, as Li et al.), "val" or "test".
    """
    cfg = Config.from_workdir(workdir)
    net = wd.load_model(workdir, which)
    data = common.splits(workdir, cfg)
    dataset = {"train": data.train_eval, "val": data.val, "test": data.test}[split]
    taken = [(x.numpy(), y.numpy()) for x, y in dataset.take(batches)]
    coords, losses = loss_surface(net, taken, grid, span, robust, cfg.eval_attack(), seed)
    folder = common.out_dir(workdir, out)
    kind = "robust" if robust else "clean"
    np.savez(os.path.join(folder, "landscape.npz"), coords=coords, losses=losses,
             robust=robust, split=split)
    fig = common.plt.figure(figsize=(11.0, 4.8), dpi=common.DPI)
    flat = fig.add_subplot(1, 2, 1)
    a, b = np.meshgrid(coords, coords)
    levels = flat.contourf(a, b, losses, levels=20, cmap="viridis")
    flat.contour(a, b, losses, levels=20, colors="k", linewidths=0.3)
    fig.colorbar(levels, ax=flat, label=f"{kind} loss")
    flat.plot([0], [0], "r*", ms=10)
    flat.set_xlabel("direction 1")
    flat.set_ylabel("direction 2")
    surface = fig.add_subplot(1, 2, 2, projection="3d")
    surface.plot_surface(a, b, losses, cmap="viridis", linewidth=0)
    surface.set_zlabel(f"{kind} loss")
    fig.suptitle(f"Loss landscape ({kind}, {split} split, {which}): {common.label(workdir)}")
    path = os.path.join(folder, "landscape.png")
    return [common.save(fig, path, [workdir])]
