"""Mask computation: importance scores + target sparsity + granularity -> boolean keep-masks.

Pure NumPy on host arrays, with no Keras layers or variables, so it serves every
Keras backend alike. Masks are computed outside the train step, every `frequency`
steps; an O(n) partition keeps that cheap (a 784x300 kernel takes under 1 ms).

Block and N:M sparsity tile a 2-D view of each weight whose rows run along its
input axis (or the channel axis of a depthwise kernel) and whose columns run along
its output axis, as described by `WeightAxes.grouping` (tfprune.layers.axes); a Conv2DTranspose
kernel `(h, w, out, in)` is therefore tiled along `in`, not along axis -2.
Granularities, as in TensorFlow Model Optimization:

- unstructured: `block_size=(1, 1)`;
- block: scores pooled (AVG or MAX) over `block_size` = (rows, columns) blocks, the
  whole block kept or pruned together; blocks at the edge may be partial;
- N:M: `m_by_n=(m, n)` zeroes the `m` smallest of every `n` consecutive weights along
  the rows, so (2, 4) is 2:4 sparsity and (1, 4) gives 25% zeros. A last, shorter
  group (input size not a multiple of n) keeps up to `n - m` weights, as tfmot's padding does.

How many units each weight keeps, and which, is decided by `tfprune.selection.allocation`
(tfmot's rounding; every weight keeps at least one unit, one weight or one block).
"""


import numpy as np

from tfprune.layers.axes import WeightAxes
from tfprune.selection.allocation import allocate
from tfprune.validation import is_integer

POOLING_TYPES = ("AVG", "MAX")
_FLAT = WeightAxes()  # no input/output axes: to_grid ranks the weight as one flat row


class Granularity:
    """How weights are grouped when pruned: block size and pooling, or N:M.

    Example:

    >>> Granularity(m_by_n=(2, 4)).m_by_n  # zero 2 of every 4 consecutive input weights
    (2, 4)
    """

    def __init__(self, block_size=(1, 1), block_pooling_type="AVG", m_by_n=None):
        block_size = tuple(block_size)
        if len(block_size) != 2 or any(not is_integer(b) or b < 1 for b in block_size):
            raise ValueError(f"`block_size` must be two positive integers, got {block_size!r}.")
        if block_pooling_type not in POOLING_TYPES:
            raise ValueError(f"`block_pooling_type` must be one of {POOLING_TYPES}, got {block_pooling_type!r}.")
        if m_by_n is not None:
            m_by_n = tuple(m_by_n)
            if len(m_by_n) != 2 or any(not is_integer(v) or v < 1 for v in m_by_n):
                raise ValueError(f"`sparsity_m_by_n` must be two positive integers (m, n), got {m_by_n!r}.")
            if m_by_n[0] >= m_by_n[1]:
                raise ValueError(
                    f"`sparsity_m_by_n` = {m_by_n}: m (weights zeroed in every group) must be smaller than "
                    "n (group size), as in tfmot; for 2:4 sparsity pass (2, 4)."
                )
            if block_size != (1, 1):
                raise ValueError("`sparsity_m_by_n` cannot be combined with a `block_size` other than (1, 1).")
            m_by_n = (int(m_by_n[0]), int(m_by_n[1]))
        self.block_size = tuple(int(b) for b in block_size)
        self.block_pooling_type = block_pooling_type
        self.m_by_n = m_by_n

    @property
    def structured(self):
        """True for block or N:M sparsity, which need a weight with input and output axes."""
        return self.m_by_n is not None or self.block_size != (1, 1)

    def check_fits(self, axes, shape, weight_name):
        """Raises ValueError when this granularity cannot tile a weight of `shape` with `axes`."""
        if self.structured and axes.grouping is None:
            raise ValueError(
                f"Weight {weight_name} of shape {tuple(shape)} has no input and output axes (a 1-D weight?): "
                "block and N:M pruning tile input x output; prune it unstructured (no block_size/sparsity_m_by_n)."
            )

    def __eq__(self, other):
        return isinstance(other, Granularity) and vars(self) == vars(other)

    def __repr__(self):
        if self.m_by_n:
            return f"N:M sparsity {self.m_by_n}"
        if self.block_size != (1, 1):
            return f"blocks {self.block_size} ({self.block_pooling_type})"
        return "unstructured"


def to_grid(x, axes):
    """`x` with its grouping axes (rows, columns) moved last, as a (P, rows, columns) array."""
    grouping = axes.grouping
    if grouping is None:
        return x.reshape(1, 1, -1)
    moved = np.moveaxis(x, grouping, (-2, -1))
    return moved.reshape(-1, moved.shape[-2], moved.shape[-1])


def from_grid(grid, axes, shape):
    """Inverse of `to_grid`: a (P, rows, columns) array back in the layout of a weight of `shape`."""
    grouping = axes.grouping
    if grouping is None:
        return grid.reshape(shape)
    rest = [size for axis, size in enumerate(shape) if axis not in grouping]
    moved_shape = (*rest, shape[grouping[0]], shape[grouping[1]])
    return np.moveaxis(grid.reshape(moved_shape), (-2, -1), grouping)


def pool_blocks(grid, granularity):
    """Pools (P, R, C) scores over blocks -> (P, ceil(R/b0), ceil(C/b1)); edge blocks may be partial."""
    b0, b1 = granularity.block_size
    if (b0, b1) == (1, 1):
        return grid
    p, r, c = grid.shape
    rows, cols = -(-r // b0) * b0, -(-c // b1) * b1
    padded = (rows, cols) != (r, c)
    if padded:
        grid = np.pad(grid.astype(np.float32), ((0, 0), (0, rows - r), (0, cols - c)), constant_values=np.nan)
    blocks = grid.reshape(p, rows // b0, b0, cols // b1, b1)
    if granularity.block_pooling_type == "AVG":
        return (np.nanmean if padded else np.mean)(blocks, axis=(2, 4))
    return (np.nanmax if padded else np.max)(blocks, axis=(2, 4))


def expand_blocks(block_mask, granularity, grid_shape):
    """Inverse of `pool_blocks` for masks: repeats each block entry over its block, cropped to `grid_shape`."""
    b0, b1 = granularity.block_size
    if (b0, b1) != (1, 1):
        block_mask = np.repeat(np.repeat(block_mask, b0, axis=1), b1, axis=2)
        block_mask = block_mask[:, : grid_shape[1], : grid_shape[2]]
    return block_mask


def threshold_masks(score_list, sparsity, granularity, axes_list=None, *, scope="global", max_sparsity=None,
                    overrides=None):
    """Keep-masks for several weights from their scores, by `allocation.allocate` over their units.

    Each weight is one group whose units are its entries, or its blocks pooled as `granularity`
    says; `axes_list` gives each weight's `WeightAxes` (needed for blocks). With scope "global"
    the weights are ranked together (one threshold), with "layer" each on its own; `max_sparsity`
    and `overrides` ({index: sparsity}) are passed on. Returns boolean keep-masks with the shapes
    of `score_list`.
    """
    if granularity.block_size == (1, 1):
        axes_list = [_FLAT] * len(score_list)  # single weights need no 2-D view: rank them flat
    else:
        axes_list = axes_list or [WeightAxes.of_shape(np.shape(s)) for s in score_list]
    grids = [to_grid(np.asarray(s), a) for s, a in zip(score_list, axes_list)]
    pooled = [pool_blocks(g, granularity) for g in grids]
    keep = allocate([p.reshape(-1) for p in pooled], sparsity, scope, max_sparsity, overrides=overrides)
    return [from_grid(expand_blocks(k.reshape(p.shape), granularity, g.shape), a, np.shape(s))
            for s, a, g, p, k in zip(score_list, axes_list, grids, pooled, keep)]


def m_by_n_mask(scores, m, n, axes=None):
    """Zeroes the m smallest of every n consecutive scores along the rows (input axis) of `axes`.

    Without `axes`, rows are axis -2 (the input axis of Dense and Conv kernels).
    """
    scores = np.asarray(scores, dtype=np.float32)
    axes = axes or WeightAxes.of_shape(scores.shape)
    grid = to_grid(scores, axes)
    p, r, c = grid.shape
    rows = -(-r // n) * n
    # Padding ranks below every real score, so a short last group keeps its real weights first.
    padded = np.pad(np.swapaxes(grid, 1, 2), ((0, 0), (0, 0), (0, rows - r)), constant_values=-1.0)
    groups = padded.reshape(p, c, rows // n, n)
    rank = np.argsort(np.argsort(-groups, axis=-1, kind="stable"), axis=-1)
    keep = np.swapaxes((rank < n - m).reshape(p, c, rows)[:, :, :r], 1, 2)
    return from_grid(keep, axes, scores.shape)
