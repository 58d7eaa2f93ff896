"""The masks tfmot's ``pruning_impl.Pruning`` assigns, in NumPy (float32 where tfmot is).

* magnitude (block ``(1, 1)``): ``schedules.tfmot_magnitude_mask`` -- keep ``|w| >=`` the k-th
  largest ``|w|``, ``k = max(round(n * (1 - s)), 1)``; ties with the threshold are kept.
* block (rank-2 kernels): ``|w|`` is pooled (AVG or MAX) over ``block_size`` windows with
  ``padding="SAME"`` -- first along rows, then along columns, as ``factorized_pool`` -- the pooled
  matrix gets the magnitude mask, and each pooled entry is repeated over a ``block_size`` block
  anchored at (0, 0), then cut to the kernel's shape. When a dimension is not a multiple of the
  block, SAME padding centres the pooling windows while the expanded blocks stay anchored at 0,
  so pooled and masked blocks are offset; this is tfmot's behaviour and it is reproduced.
* m-by-n (``sparsity_m_by_n=(m, n)``): in every group of ``n`` consecutive input channels (per
  output channel and kernel position) the ``n - m`` largest ``|w|`` are kept; ties go to the
  lower index (``top_k``). tfmot pads a partial last group; birds_tf refuses it (see layers).

``tests/test_pruning_tfmot_parity.py`` compares all three with tfmot at every pruning step.
"""
import numpy as np

from birds_tf.sparsity import schedules

_F32 = np.float32
M_BY_N_THRESHOLD = _F32(999.0)  # tfmot's placeholder threshold for m-by-n masks
POOLING_TYPES = ("AVG", "MAX")


def magnitude_mask(weights, sparsity):
    """``(threshold, mask)`` of ``Pruning._update_mask``."""
    mask, threshold = schedules.tfmot_magnitude_mask(np.asarray(weights, _F32), _F32(sparsity),
                                                     return_threshold=True)
    return _F32(threshold), mask.astype(_F32)


def _pool_rows(x, window, pooling_type):
    """``tf.nn.pool`` along axis 0 with ``window == stride`` and SAME padding.

    TF's CPU average pool sums the valid rows of a window in order and divides by their count
    (padding is not counted); the max pool ignores padding.
    """
    height = x.shape[0]
    out = -(-height // window)
    pad_before = max((out - 1) * window + window - height, 0) // 2
    rows = []
    for i in range(out):
        start = max(i * window - pad_before, 0)
        stop = min(i * window - pad_before + window, height)
        if pooling_type == "MAX":
            rows.append(np.max(x[start:stop], axis=0))
        else:
            acc = np.zeros(x.shape[1:], _F32)
            for r in range(start, stop):
                acc = acc + x[r]
            rows.append(acc / _F32(stop - start))
    return np.stack(rows).astype(_F32)


def block_mask(weights, sparsity, block_size, pooling_type="AVG"):
    """``(threshold, mask)`` of ``Pruning._maybe_update_block_mask`` for a rank-2 kernel."""
    w = np.asarray(weights, _F32)
    if w.ndim != 2:
        raise ValueError("Block sparsity can only be used for layers which have 2-dimensional "
                         f"weights; got a kernel of shape {w.shape}.")
    if pooling_type not in POOLING_TYPES:
        raise ValueError(f"Unsupported pooling type {pooling_type!r}; should be 'AVG' or 'MAX'.")
    bh, bw = (int(b) for b in block_size)
    pooled = _pool_rows(np.abs(w), bh, pooling_type)
    pooled = _pool_rows(pooled.T, bw, pooling_type).T
    threshold, pooled_mask = magnitude_mask(pooled, sparsity)
    expanded = np.repeat(np.repeat(pooled_mask, bh, axis=0), bw, axis=1)
    return threshold, np.ascontiguousarray(expanded[:w.shape[0], :w.shape[1]])


def m_by_n_groups(shape):
    """The ``[rows, input channels]`` layout tfmot groups in (``weights_rearrange``)."""
    if len(shape) == 2:
        return shape[1], shape[0]
    if len(shape) == 4:
        return shape[3] * shape[0] * shape[1], shape[2]
    raise ValueError(f"m-by-n sparsity needs a rank-2 or rank-4 kernel, got shape {shape}.")


def m_by_n_mask(weights, m_by_n):
    """``Pruning._update_mask_sparsity_m_by_n``: keep the ``n - m`` largest of every ``n``."""
    w = np.asarray(weights, _F32)
    m, n = m_by_n
    rows, cols = m_by_n_groups(w.shape)
    if cols % n:
        raise ValueError(f"m-by-n sparsity {tuple(m_by_n)} needs the input-channel size "
                         f"({cols}) to be a multiple of n={n}.")
    prepared = w.T if w.ndim == 2 else w.transpose(3, 0, 1, 2).reshape(rows, cols)
    groups = np.abs(prepared).reshape(-1, n)
    keep = np.argsort(-groups, axis=1, kind="stable")[:, :n - m]
    mask = np.zeros_like(groups)
    np.put_along_axis(mask, keep, _F32(1.0), axis=1)
    mask = mask.reshape(rows, cols)
    if w.ndim == 2:
        return M_BY_N_THRESHOLD, np.ascontiguousarray(mask.T)
    out, kh, kw, cin = w.shape[3], w.shape[0], w.shape[1], w.shape[2]
    return M_BY_N_THRESHOLD, np.ascontiguousarray(
        mask.reshape(out, kh, kw, cin).transpose(1, 2, 3, 0))
