"""Grad-CAM heatmaps and saliency maps on PGD adversarial test images (paper Figure 6).

As the reference scripts: PGD-20 (the run's evaluation attack, BN in inference mode), Grad-CAM
on the last block's output for the predicted class, saliency = |d max logit / d input|
(optionally SmoothGrad). The reference's Grad-CAM smoothing options (aug/eigen smooth) are not
reproduced. Batches always hold >= 2 images (a TF/oneDNN crash hits single-image gradients
through 1x1 stride-2 convs).
"""
import os

import keras
import numpy as np
import tensorflow as tf

from birds_tf.attacks import pgd
from birds_tf.experiment.train_eval import Config
from birds_tf.plots import common
from birds_tf.utils import workdir as wd

_SKIP = (keras.layers.BatchNormalization, keras.layers.ReLU, keras.layers.Activation,
         keras.layers.ZeroPadding2D, keras.layers.MaxPooling2D, keras.layers.AveragePooling2D,
         keras.layers.Dropout)


def feature_layer(net, name=None):
    """The layer Grad-CAM reads: ``name``, else the last 4-D output that is a conv or a block's
    sum (the reference's ``model.layer4[-1]``), not a BN/ReLU/pooling after it."""
    if name is not None:
        return net.get_layer(name)
    for layer in reversed(net.layers):
        shape = getattr(getattr(layer, "output", None), "shape", None)
        if shape is not None and len(shape) == 4 and not isinstance(layer, _SKIP) and \
                not isinstance(layer, keras.layers.InputLayer):
            return layer
    raise ValueError(f"{net.name!r} has no 4-D feature map for Grad-CAM.")


def _check_batch(x):
    if int(np.shape(x)[0]) < 2:
        raise ValueError("Grad-CAM and saliency need a batch of at least 2 images.")


def grad_cam(net, x, layer=None):
    """Grad-CAM maps in [0, 1], shape (N, H, W) of the input, for each image's predicted class."""
    _check_batch(x)
    feature = feature_layer(net, layer)
    probe = keras.Model(net.inputs, [feature.output, net.output])
    x = tf.convert_to_tensor(x, tf.float32)
    with tf.GradientTape() as tape:
        maps, logits = probe(x, training=False)
        target = tf.reduce_sum(tf.reduce_max(tf.cast(logits, tf.float32), axis=-1))
    grads = tape.gradient(target, maps)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * tf.cast(maps, tf.float32), axis=-1))[..., None]
    cam = tf.image.resize(cam, tf.shape(x)[1:3], method="bilinear")[..., 0].numpy()
    peak = cam.reshape(len(cam), -1).max(axis=1)[:, None, None]
    return np.where(peak > 0, cam / np.maximum(peak, 1e-12), 0.0)


def saliency(net, x, smooth_samples=0, noise=0.15, seed=0):
    """|gradient of the max logit w.r.t. the image|, max over channels, scaled to [0, 1].

    ``smooth_samples`` > 0 averages over noisy copies (SmoothGrad, Smilkov et al. 2017) with
    Gaussian noise of std ``noise`` (pixels in [0, 1]).
    """
    _check_batch(x)
    x = tf.convert_to_tensor(x, tf.float32)
    rng = tf.random.Generator.from_seed(seed)
    inputs = [x] if not smooth_samples else \
        [x + rng.normal(tf.shape(x), stddev=noise) for _ in range(int(smooth_samples))]
    total = 0.0
    for inp in inputs:
        with tf.GradientTape() as tape:
            tape.watch(inp)
            logits = tf.cast(net(inp, training=False), tf.float32)
            target = tf.reduce_sum(tf.reduce_max(logits, axis=-1))
        total += tf.abs(tape.gradient(target, inp))
    sal = tf.reduce_max(total / len(inputs), axis=-1).numpy()
    peak = sal.reshape(len(sal), -1).max(axis=1)[:, None, None]
    return sal / np.maximum(peak, 1e-12)


def _adversarial(workdir, which, images, seed):
    """The workdir's model and PGD adversarial versions of its first test images."""
    if images < 2:
        raise ValueError(f"images must be >= 2, got {images}.")
    cfg = Config.from_workdir(workdir)
    net = wd.load_model(workdir, which)
    xs, ys = [], []
    for x, y in common.splits(workdir, cfg).test:
        xs.append(x.numpy())
        ys.append(y.numpy())
        if sum(len(v) for v in ys) >= images:
            break
    x, y = np.concatenate(xs)[:images], np.concatenate(ys)[:images].reshape(-1)
    attack = cfg.eval_attack()
    tf.random.set_seed(seed)
    x_adv = pgd.pgd_linf(net, x, y.astype(np.int32), attack.eps, attack.step_size,
                         attack.steps, random_start=True, training=False).numpy()
    return net, x_adv


def _show(ax, image):
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(np.clip(image, 0, 1), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _grid(rows, cols):
    fig, axes = common.figure(max(4.5, 1.7 * cols), max(3.0, 1.8 * rows), nrows=rows,
                              ncols=cols, squeeze=False)
    return fig, axes


def gradcam_figure(workdirs, out=None, which="final", images=6, seed=0, layer=None):
    """One row per run: its adversarial images with the Grad-CAM heatmap over them."""
    fig, axes = _grid(len(workdirs), images)
    for r, path in enumerate(workdirs):
        net, x_adv = _adversarial(path, which, images, seed)
        cams = grad_cam(net, x_adv, layer)
        for c in range(images):
            _show(axes[r, c], x_adv[c])
            axes[r, c].imshow(cams[c], cmap="jet", alpha=0.5, vmin=0, vmax=1,
                              interpolation="bilinear")
        axes[r, 0].set_ylabel(common.label(path), fontsize=8)
    fig.suptitle("Grad-CAM on PGD adversarial images")
    path = os.path.join(common.out_dir(workdirs[0], out), "gradcam.png")
    return [common.save(fig, path, workdirs)]


def saliency_figure(workdirs, out=None, which="final", images=6, seed=0, smooth_samples=0):
    """The first run's adversarial images, then one row of saliency maps per run."""
    fig, axes = _grid(len(workdirs) + 1, images)
    for r, path in enumerate(workdirs):
        net, x_adv = _adversarial(path, which, images, seed)
        if r == 0:
            for c in range(images):
                _show(axes[0, c], x_adv[c])
            axes[0, 0].set_ylabel("adversarial", fontsize=8)
        maps = saliency(net, x_adv, smooth_samples)
        for c in range(images):
            axes[r + 1, c].imshow(maps[c], cmap="hot", vmin=0, vmax=1, interpolation="nearest")
            axes[r + 1, c].set_xticks([])
            axes[r + 1, c].set_yticks([])
        axes[r + 1, 0].set_ylabel(common.label(path), fontsize=8)
    fig.suptitle("Saliency maps on PGD adversarial images")
    path = os.path.join(common.out_dir(workdirs[0], out), "saliency.png")
    return [common.save(fig, path, workdirs)]
