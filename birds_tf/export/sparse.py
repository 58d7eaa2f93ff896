"""Sparse export: masked layers become plain ``Conv2D``/``Dense`` with ``kernel * mask`` weights.

Why: a deployed model should need neither birds_tf nor a mask multiply at every call; the zeros
live in the kernel itself. The SavedModel keeps dense storage (TF has no sparse conv kernels),
so the size a sparse model really needs is shown by a compressed copy next to it: per masked
kernel a bit-packed mask plus its non-zero values (``sparse_weights.npz``).
"""
import json
import os
import shutil

import keras
import numpy as np

from birds_tf.export import litert as litert_lib
from birds_tf.export import shrink as shrink_lib
from birds_tf.export.fold import fold_masks  # noqa: F401 (public here too)
from birds_tf.layers.masked import MASKED_LAYER_TYPES
from birds_tf.metrics import flop_count
from birds_tf.sparsity import masks as masks_lib
from birds_tf.utils import records
from birds_tf.utils import workdir as wd

def save_sparse_weights(path, net):
    """Compressed copy: masked kernels as packed bits + non-zero values, the rest as is."""
    payload = {}
    for i, layer in enumerate(net.layers):
        if isinstance(layer, MASKED_LAYER_TYPES):
            mask = np.asarray(layer.mask.numpy()) > 0
            kernel = np.asarray(layer.kernel.numpy())
            payload[f"{layer.name}/kernel:bits"] = np.packbits(mask.reshape(-1))
            payload[f"{layer.name}/kernel:shape"] = np.asarray(mask.shape, np.int64)
            payload[f"{layer.name}/kernel:values"] = kernel[mask].astype(np.float32)
            rest = [w for w in layer.weights if w is not layer.kernel and w is not layer.mask]
        else:
            rest = layer.weights
        for w in rest:
            payload[f"{layer.name}/{w.name}:{i}"] = np.asarray(w.numpy())
    np.savez_compressed(path, **payload)
    return os.path.getsize(path)


def load_sparse_weights(path):
    """``{layer: dense kernel}`` of the masked layers from ``save_sparse_weights``' file."""
    out = {}
    with np.load(path) as data:
        for key in data.files:
            if key.endswith("/kernel:bits"):
                name = key[:-len("/kernel:bits")]
                shape = tuple(data[f"{name}/kernel:shape"])
                mask = np.unpackbits(data[key], count=int(np.prod(shape))).astype(bool)
                kernel = np.zeros(mask.size, np.float32)
                kernel[mask] = data[f"{name}/kernel:values"]
                out[name] = kernel.reshape(shape)
    return out


def _dense_sizes(plain, folder):
    """Raw float32 bytes of every weight and the size of a zip (deflate) of them."""
    raw = sum(int(np.prod(w.shape)) * 4 for w in plain.weights)
    path = os.path.join(folder, ".dense_weights.npz")
    np.savez_compressed(path, *[np.asarray(w.numpy()) for w in plain.weights])
    zipped = os.path.getsize(path)
    os.remove(path)
    return raw, zipped


def _dir_size(path):
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path)
               for f in files)


def export_workdir(workdir, out, which="final", shrink=False, litert=False):
    """SavedModel of the workdir's ``which`` checkpoint at ``out``, with ``metadata.json`` and
    ``sparse_weights.npz`` inside it; returns the metadata. ``shrink``: dead channels removed
    first (``birds_tf.export.shrink``), their counts before/after in the metadata. ``litert``:
    ``model.tflite`` (+ ``model_sparse.tflite`` for a sparse model) next to it
    (``birds_tf.export.litert``), their sizes in ``sizes_bytes``.

    A full disk raises ``records.DiskFullError`` naming ``out`` and an estimate of the space
    (twice the float32 weights), after removing the partial export; the workdir is only read.
    """
    res = wd.results(workdir)
    if os.path.exists(out) and os.listdir(out):
        raise ValueError(f"Export folder {os.fspath(out)!r} exists and is not empty; choose a "
                         "new --out.")
    existed = os.path.isdir(out)
    try:
        return _export(workdir, out, which, shrink, litert, res)
    except BaseException as e:
        full = records.is_disk_full(e) or (
            type(e).__name__ == "ResourceExhaustedError" and "space" in str(e).lower())
        if not full:
            raise
        shutil.rmtree(out, ignore_errors=True)  # only this export's files: out was empty
        if existed:
            os.makedirs(out, exist_ok=True)
        needed = 2 * sum(int(np.prod(w.shape)) * 4 for w in wd.load_model(workdir, which).weights)
        raise records.disk_full_error(os.fspath(out), needed) from e


def _export(workdir, out, which, shrink, litert, res):
    if shrink:
        shrink_lib.check_sparse_run(res)  # before any model work
    net = wd.load_model(workdir, which)
    shrunk = None
    if shrink:
        params_before = int(fold_masks(net).count_params())
        net, shrunk = shrink_lib.shrink_for_export(net, res)
        if not shrunk.get("shrunk_during_training"):
            shrunk["parameters_before"] = params_before
    plain = fold_masks(net)
    plain.export(out, format="tf_saved_model", verbose=False)
    counted = flop_count.count(net)
    sparse_bytes = save_sparse_weights(os.path.join(out, "sparse_weights.npz"), net)
    raw, zipped = _dense_sizes(plain, out)
    texts = {}
    files = wd.Workdir(workdir)
    for name in (files.CONFIG_GIN, files.OPERATIVE_CONFIG_GIN):
        path = files.path(name)
        if os.path.exists(path):
            with open(path) as f:
                texts[name] = f.read()
    layers = {layer.name: {"density": layer.density, "nnz": layer.nnz, "weights": layer.weights,
                           "macs": layer.macs, "macs_dense": layer.macs_dense}
              for layer in counted.layers if layer.weights}
    metadata = {
        "source": os.path.abspath(os.fspath(workdir)), "checkpoint": which,
        "signature": "serve", "input": {"shape": list(net.input_shape[1:]), "dtype": "float32",
                                        "range": [0.0, 1.0]},
        "method": res.get("method"), "arch": res.get("arch"), "dataset": res.get("dataset"),
        "density": masks_lib.global_density(net) if masks_lib.masked_layers(net) else 1.0,
        "layers": layers,
        "inference_flops": counted.flops, "inference_flops_dense": counted.flops_dense,
        "inference_macs": counted.macs, "flops_convention": flop_count.CONVENTION,
        "training_flops": res.get("training_flops"),
        "training_flops_paper_convention": res.get("training_flops_paper_convention"),
        "sa": res.get(f"sa_{which}"), "ra": res.get(f"ra_{which}"),
        "results": {k: v for k, v in res.items() if not isinstance(v, (list, dict))},
        "sizes_bytes": {"dense_float32": raw, "dense_zip": zipped, "sparse_zip": sparse_bytes,
                        "saved_model": _dir_size(out)},
        "config": texts,
    }
    if litert:
        metadata["sizes_bytes"].update(litert_lib.export_next_to(plain, out, metadata["density"] < 1.0))
    if shrunk is not None:
        metadata["shrink"] = dict(shrunk, parameters_after=int(plain.count_params()))
    with open(os.path.join(out, "metadata.json"), "w") as f:
        json.dump(metadata, f, indent=2, sort_keys=True, default=float)
    return metadata

