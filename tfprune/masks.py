"""Mask computation: importance scores + target sparsity + granularity -> 0/1 masks.

Pure `keras.ops` code with no Keras layers or variables, so it runs on any backend.
Granularities:

- unstructured: `block_size=(1, 1)`;
- block: scores pooled (AVG or MAX) over `block_size` blocks of the last two axes,
  the whole block kept or pruned together (for Dense/Conv kernels the last two
  axes are input and output channels);
- N:M: `m_by_n=(m, n)` keeps the `m` largest of every `n` consecutive weights
  along axis -2 (the input-channel axis of Dense and Conv kernels).

The number of pruned units is `round(sparsity * units)`, exactly.
"""

import math

import numpy as np
from keras import ops

POOLING_TYPES = ("AVG", "MAX")


class Granularity:
    """How weights are grouped when pruned: block size and pooling, or N:M.

    Example:

    >>> Granularity(block_size=(1, 4)).check_fits((16, 8), "dense/kernel")
    """

    def __init__(self, block_size=(1, 1), block_pooling_type="AVG", m_by_n=None):
        block_size = tuple(block_size)
        if len(block_size) != 2 or any(not isinstance(b, int) or b < 1 for b in block_size):
            raise ValueError(f"`block_size` must be two positive integers, got {block_size!r}.")
        if block_pooling_type not in POOLING_TYPES:
            raise ValueError(f"`block_pooling_type` must be one of {POOLING_TYPES}, got {block_pooling_type!r}.")
        if m_by_n is not None:
            m_by_n = tuple(m_by_n)
            if len(m_by_n) != 2 or any(not isinstance(v, int) or v < 1 for v in m_by_n):
                raise ValueError(f"`sparsity_m_by_n` must be two positive integers (m, n), got {m_by_n!r}.")
            if m_by_n[0] > m_by_n[1]:
                raise ValueError(
                    f"`sparsity_m_by_n` = {m_by_n}: m (weights kept) must not exceed n (group size); "
                    "for 2:4 sparsity pass (2, 4)."
                )
            if block_size != (1, 1):
                raise ValueError("`sparsity_m_by_n` cannot be combined with a `block_size` other than (1, 1).")
        self.block_size = block_size
        self.block_pooling_type = block_pooling_type
        self.m_by_n = m_by_n

    def check_fits(self, shape, weight_name):
        """Raises ValueError when this granularity cannot tile a weight of `shape`."""
        if len(shape) < 2 and (self.m_by_n or self.block_size != (1, 1)):
            raise ValueError(f"Weight {weight_name} of shape {tuple(shape)} is 1-D: block and N:M pruning need 2-D or more.")
        if self.m_by_n:
            n = self.m_by_n[1]
            if shape[-2] % n:
                raise ValueError(
                    f"N:M sparsity {self.m_by_n} needs the input axis (axis -2) of {weight_name} to be a multiple "
                    f"of n={n}, but its shape is {tuple(shape)}. Exclude this layer or choose another n."
                )
        for axis, b in zip((-2, -1), self.block_size):
            if b > 1 and shape[axis] % b:
                raise ValueError(
                    f"`block_size` {self.block_size} does not fit {weight_name} of shape {tuple(shape)}: "
                    f"axis {axis} ({shape[axis]}) is not a multiple of {b}."
                )

    @property
    def sparsity(self):
        """The fixed sparsity of N:M pruning (None for block/unstructured)."""
        return None if self.m_by_n is None else 1.0 - self.m_by_n[0] / self.m_by_n[1]

    def get_config(self):
        return {
            "block_size": list(self.block_size),
            "block_pooling_type": self.block_pooling_type,
            "m_by_n": None if self.m_by_n is None else list(self.m_by_n),
        }


def _as_3d(x):
    shape = tuple(x.shape)
    return ops.reshape(x, (-1, shape[-2], shape[-1])) if len(shape) >= 2 else ops.reshape(x, (1, 1, shape[0]))


def pool_blocks(scores, granularity):
    """Pools scores over blocks of the last two axes -> array of shape (P, R/b0, C/b1)."""
    s = _as_3d(scores)
    b0, b1 = granularity.block_size
    if (b0, b1) == (1, 1):
        return s
    p, r, c = s.shape
    s = ops.reshape(s, (p, r // b0, b0, c // b1, b1))
    reduce = ops.mean if granularity.block_pooling_type == "AVG" else ops.max
    return reduce(s, axis=(2, 4))


def expand_blocks(block_mask, granularity, shape):
    """Inverse of `pool_blocks` for masks: repeats each block entry over its block."""
    b0, b1 = granularity.block_size
    m = block_mask
    if b0 > 1:
        m = ops.repeat(m, b0, axis=1)
    if b1 > 1:
        m = ops.repeat(m, b1, axis=2)
    return ops.reshape(m, shape)


def keep_largest(scores, sparsity):
    """1-D 0/1 mask pruning exactly round(sparsity * n) of the smallest scores."""
    n = int(scores.shape[0])
    num_pruned = int(round(sparsity * n))
    if num_pruned == 0:
        return ops.ones((n,), dtype="float32")
    order = ops.argsort(scores)
    pruned = ops.scatter(ops.expand_dims(order[:num_pruned], -1), ops.ones((num_pruned,), dtype="float32"), (n,))
    return 1.0 - pruned


def threshold_masks(score_list, sparsity, granularity):
    """Masks for several weights ranked together (one threshold across all of them).

    Layer-scope pruning passes one weight's scores; global scope passes all of them.
    Returns float32 masks with the shapes of `score_list`.
    """
    pooled = [pool_blocks(ops.cast(s, "float32"), granularity) for s in score_list]
    sizes = [int(math.prod(p.shape)) for p in pooled]
    flat_mask = keep_largest(ops.concatenate([ops.reshape(p, (-1,)) for p in pooled], axis=0), sparsity)
    masks = []
    offset = 0
    for scores, p, size in zip(score_list, pooled, sizes):
        block_mask = ops.reshape(flat_mask[offset : offset + size], p.shape)
        masks.append(expand_blocks(block_mask, granularity, tuple(scores.shape)))
        offset += size
    return masks


def m_by_n_mask(scores, m, n):
    """Keeps the m largest of every n consecutive scores along axis -2."""
    shape = tuple(scores.shape)
    s = ops.swapaxes(_as_3d(ops.cast(scores, "float32")), 1, 2)  # (P, C, R)
    p, c, r = s.shape
    groups = ops.reshape(s, (p, c, r // n, n))
    rank = ops.argsort(ops.argsort(-groups, axis=-1), axis=-1)
    keep = ops.cast(rank < m, "float32")
    return ops.reshape(ops.swapaxes(ops.reshape(keep, (p, c, r)), 1, 2), shape)


def magnitude(weight, mask=None):
    """Magnitude scores; already-pruned weights score 0 so they stay pruned."""
    return ops.abs(weight if mask is None else weight * ops.cast(mask, weight.dtype))


def sparsity_of(array):
    """Fraction of exact zeros in a numpy-convertible array."""
    a = np.asarray(array)
    return float((a == 0).sum() / a.size) if a.size else 0.0
