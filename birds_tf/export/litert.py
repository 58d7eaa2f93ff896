"""LiteRT (TFLite) export of a plain (masks folded) Keras model, through Keras 3's
``model.export(path, format="litert")`` (TensorFlow's built-in converter, no extra package).

Why two files: with ``optimizations=[tf.lite.Optimize.EXPERIMENTAL_SPARSITY]`` the converter
stores sparse kernels in a compressed (block-sparse) layout, so an unstructured model's file
shrinks about as much as its density. On x86 that does not make it faster: XNNPACK's sparse
path is off on AVX CPUs and covers 1x1 convolutions only, so the sparse file runs at the dense
file's latency. A channel-shrunk model (``birds_tf.export.shrink``) is smaller *and* faster.
"""
import os

import numpy as np


def export_litert(plain, path, sparse=False):
    """Write ``plain`` as a ``.tflite`` file at ``path``; returns its size in bytes.

    Args:
      plain: a Keras model without birds_tf masks (``birds_tf.export.fold_masks``).
      path: the file, ending in ``.tflite``.
      sparse: ask the converter for the sparsity optimization (sparse weight storage).
    """
    import tensorflow as tf
    kwargs = {}
    if sparse:
        kwargs["optimizations"] = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    plain.export(os.fspath(path), format="litert", verbose=False, **kwargs)
    return os.path.getsize(path)


def export_next_to(plain, folder, sparse):
    """``model.tflite`` (and ``model_sparse.tflite`` when ``sparse``) inside ``folder``;
    returns ``{file name: bytes}``."""
    sizes = {"model.tflite": export_litert(plain, os.path.join(folder, "model.tflite"))}
    if sparse:
        sizes["model_sparse.tflite"] = export_litert(
            plain, os.path.join(folder, "model_sparse.tflite"), sparse=True)
    return sizes


def run_litert(path, x):
    """Logits of the ``.tflite`` file at ``path`` on the batch ``x`` (tests, benchmarks)."""
    import warnings

    import tensorflow as tf
    with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice (ai_edge_litert
        warnings.simplefilter("ignore")  # is not installed in this environment)
        interpreter = tf.lite.Interpreter(model_path=os.fspath(path))
    inp = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(inp["index"], list(np.shape(x)))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], np.asarray(x, np.float32))
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
