"""Shared by the Robust Bird / static-pruning / IWI tests: a tiny architecture and run helpers.

Method runs in tests are smoke.gin-sized, on the embedded digits, and use ``tiny_preact`` (a
two-block PreActResNet: stem conv, two basic blocks of width 4 and 8 with a 1x1 stride-2
shortcut, BN, fc) so tracing the training and evaluation graphs stays within the test budget
on two shared CPU cores. Configs are the real gin files; only the architecture is overridden.
"""
import os

import gin
import numpy as np
import pytest
import tensorflow as tf

from birds_tf import data as data_lib
from birds_tf.models import preact_resnet, registry
from birds_tf.sparsity import masks as masks_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = "tiny_preact"
# Layered after smoke.gin: the tiny architecture, no extra RGG pass.
FAST = [f"train_eval.arch = '{TINY}'", "train_eval.rgg_eval = False"]


def tiny_preact(num_classes, input_shape, mean, std, width=4, init="torch"):
    return preact_resnet.preact_resnet(preact_resnet._basic_block, (1, 1), num_classes,
                                       input_shape, mean, std, (width, 2 * width), init,
                                       name=TINY)


@pytest.fixture
def tiny_arch(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setitem(registry._BUILDERS, TINY, tiny_preact)
    gin.clear_config()
    yield TINY
    gin.clear_config()


def run(files, bindings, workdir):
    """``launch.train.run`` on repository gin files, as paths under gin/ (+ quickstart/smoke.gin
    when asked)."""
    from launch import train
    gin.clear_config()
    return train.run([os.path.join(ROOT, "gin", f) for f in files], list(bindings),
                     str(workdir), verbose=0)


def experiment(workdir, method, **overrides):
    """An ``Experiment`` on smoke-sized digits with the tiny architecture (no gin)."""
    from birds_tf.experiment import train_eval as exp_lib
    kwargs = dict(method=method, dataset="digits", arch=TINY, arch_kwargs={"width": 4},
                  epochs=2, batch_size=64, milestones=(1,), train_steps=2, eval_steps=2,
                  max_train=256, max_eval=128, sparsity=0.8, seed=1)
    kwargs.update(overrides)
    config = exp_lib.Config(**kwargs).validate()
    splits = data_lib.get_dataset(config.dataset, batch_size=config.batch_size, seed=config.seed,
                                  max_train=config.max_train, max_eval=config.max_eval)
    os.makedirs(workdir, exist_ok=True)
    return exp_lib.Experiment(config, str(workdir), tf.distribute.get_strategy(), splits)


def variables(net):
    """``{path: value}`` of every variable of ``net``."""
    return {v.path: np.array(v.numpy()) for v in net.weights}


def by_path(net, values):
    """A list aligned with ``net.weights`` (e.g. ``get_weights()``) as ``{path: value}``."""
    return {v.path: np.asarray(x) for v, x in zip(net.weights, values)}


def masked_paths(net):
    """``{layer name: (kernel path, mask path)}``."""
    return {layer.name: (layer.kernel.path, layer.mask.path)
            for layer in masks_lib.masked_layers(net)}


def assert_inherits(net, source, masks=None):
    """``net`` holds ``source`` (``{path: value}``) times its mask on kernels, and ``source``
    verbatim everywhere else except the masks themselves (checked by the caller)."""
    now = variables(net)
    layers = masked_paths(net)
    mask_paths = {m for _, m in layers.values()}
    kernel_paths = {k: name for name, (k, _) in layers.items()}
    for path, value in now.items():
        if path in mask_paths:
            continue
        if path in kernel_paths:
            mask = now[layers[kernel_paths[path]][1]] if masks is None else \
                masks[kernel_paths[path]]
            np.testing.assert_array_equal(value, source[path] * mask, err_msg=path)
        else:
            np.testing.assert_array_equal(value, source[path], err_msg=path)
