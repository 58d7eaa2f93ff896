"""The masks tfmot's ``pruning_impl.Pruning`` assigns, and when, in NumPy (float32 where tfmot is).

The one home of tfmot's mask update: the pruning API's layers (``layers.py``) and the GMP
baseline (``gradual.py``) both call ``is_due`` and ``new_mask``.

* magnitude (block ``(1, 1)``): ``magnitude_mask`` -- keep ``|w| >=`` the k-th largest ``|w|``,
  ``k = max(round(n * (1 - s)), 1)``; ties with the threshold are kept.
* block (rank-2 kernels): ``|w|`` is pooled (AVG or MAX) over ``block_size`` windows with
  ``padding="SAME"`` -- first along rows, then along columns, as ``factorized_pool`` -- the pooled
  matrix gets the magnitude mask, and each pooled entry is repeated over a ``block_size`` block
  anchored at (0, 0), then cut to the kernel's shape. When a dimension is not a multiple of the
  block, SAME padding centres the pooling windows while the expanded blocks stay anchored at 0,
  so pooled and masked blocks are offset; this is tfmot's behaviour and it is reproduced.
* m-by-n (``sparsity_m_by_n=(m, n)``): in every group of ``n`` consecutive input channels (per
  output channel and kernel position) the ``n - m`` largest ``|w|`` are kept; ties go to the
  lower index (``top_k``). tfmot pads a partial last group; birds_tf refuses it (see layers).

``tests/test_pruning_tfmot_parity.py`` compares all three with tfmot at every pruning step,
``tests/test_tfmot_parity.py`` the magnitude mask and ``conditional_mask_update``.
"""
import numpy as np

_F32 = np.float32
M_BY_N_THRESHOLD = _F32(999.0)  # tfmot's placeholder threshold for m-by-n masks
POOLING_TYPES = ("AVG", "MAX")


def keep_count(size, sparsity):
    """``max(round(float32(size) * (1 - sparsity)), 1)`` in float32, round half to even."""
    kept = _F32(size) * (_F32(1.0) - _F32(sparsity))
    return int(max(np.round(kept), _F32(1.0)))


def magnitude_mask(weights, sparsity):
    """``(threshold, mask)`` of ``Pruning._update_mask`` (block_size (1, 1), no m-by-n).

    tfmot sorts ``|w|`` descending with ``top_k``, takes the k-th value as the threshold with
    ``k = max(round(size * (1 - sparsity)), 1)`` and keeps ``|w| >= threshold`` (or-ed with a
    one-hot at the k-th position, which is always already kept). Every weight tied with the
    threshold is therefore kept, so the mask can keep more than k weights -- e.g. all of them
    once more than ``size - k`` weights are exactly zero. Threshold and mask have the weights'
    float dtype (float32 for integer weights).
    """
    w = np.asarray(weights)
    if not np.issubdtype(w.dtype, np.floating):
        w = w.astype(_F32)
    if w.size == 0:
        raise ValueError("Cannot compute a mask for an empty weight tensor.")
    s = float(sparsity)
    if not 0.0 <= s <= 1.0 or np.isnan(s):
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity!r}.")
    abs_w = np.abs(w)
    k = keep_count(abs_w.size, s)
    threshold = np.sort(abs_w.ravel())[::-1][k - 1]
    return threshold.astype(w.dtype), (abs_w >= threshold).astype(w.dtype)


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


def is_due(schedule, step, m_by_n=None):
    """Whether tfmot recomputes the mask at training step ``step`` (1-based): on the schedule's
    pruning steps, or once, at step 1, for an m-by-n mask."""
    if m_by_n:
        return step == 1
    return bool(schedule(step)[0])


def new_mask(weights, schedule, step, block_size=(1, 1), pooling_type="AVG", m_by_n=None):
    """``(threshold, mask)`` tfmot assigns at ``step``: m-by-n, magnitude or block."""
    if m_by_n:
        return m_by_n_mask(weights, m_by_n)
    sparsity = schedule(step)[1]
    if tuple(block_size) == (1, 1):
        return magnitude_mask(weights, sparsity)
    return block_mask(weights, sparsity, block_size, pooling_type)


def conditional_mask_update(weights, mask, schedule, step, **options):
    """``Pruning.conditional_mask_update`` for one weight: ``(mask, updated)``.

    Off-schedule steps keep ``mask`` unchanged, as tfmot's ``tf.cond(should_prune, update,
    no_op)``; ``options`` are ``new_mask``'s block and m-by-n settings.
    """
    if not is_due(schedule, step, options.get("m_by_n")):
        return np.asarray(mask), False
    return new_mask(weights, schedule, step, **options)[1], True
