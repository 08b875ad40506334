"""Allocation: which units of each group to prune so that a target sparsity is reached.

One function, `allocate`, for every caller. A *group* is what one count applies to, and
its *units* are what is scored and removed:

- weight pruning: a group is one weight, its units are its entries (or blocks);
- channel pruning: a group is one set of coupled channels, its units are channel groups.

Counts follow tfmot: `units * (1 - sparsity)` units are kept, rounded half to even in
float32 (`pruned_count`). No group loses its last unit, nor more than `max_sparsity` of
its units; with `round_to` each keeps a multiple of it (or all of its units): rounding
comes last and only lowers a group's count (with scope "global" the units it spares are
not given to other groups). Lower scores are pruned first; ties go in index order; a NaN
score counts as the highest.

Example:

>>> keep = allocate([np.array([3., 1., 2., 4.]), np.array([0.5, 5.])], 0.5, scope="global")
>>> [k.tolist() for k in keep]
[[True, False, False, True], [False, True]]
"""

import math

import numpy as np

SCOPES = ("layer", "global")
WEIGHT_SCOPES = (*SCOPES, "erk")  # weights may also be spread by Erdős–Rényi-Kernel (`distributions.erk_sparsities`)


def check_scope(scope, scopes=SCOPES):
    """Raises ValueError unless `scope` is one of `scopes`."""
    if scope not in scopes:
        raise ValueError(f"`scope` must be one of {scopes}, got {scope!r}.")


def pruned_count(sparsity, units):
    """How many of `units` to prune at `sparsity`: tfmot keeps `round(units * (1 - sparsity))` (half to even,
    in float32).

    >>> pruned_count(0.5, 5), pruned_count(0.5, 6)
    (3, 3)
    """
    kept = np.round(np.float32(units) * (np.float32(1.0) - np.float32(sparsity)))
    return units - int(kept)


def most_prunable(size, max_sparsity=None):
    """The most units of a group of `size` that may be pruned: `max_sparsity` of them, never the last one.

    >>> most_prunable(10, 0.7), most_prunable(10), most_prunable(1)
    (7, 9, 0)
    """
    if max_sparsity is None:
        return max(0, size - 1)
    return max(0, min(size - 1, math.floor(max_sparsity * size + 1e-9)))


def rounded_count(size, count, round_to):
    """`count` lowered so that the units kept are a multiple of `round_to` (or all of them).

    >>> rounded_count(16, 5, 8)  # 11 kept would not be a multiple of 8: keep 16
    0
    """
    if not round_to or count == 0:
        return count
    return size - min(size, math.ceil((size - count) / round_to) * round_to)


def keep_largest(scores, num_pruned):
    """1-D boolean keep-mask that prunes exactly `num_pruned` of the smallest `scores`.

    O(n): a partition finds the threshold; ties at the threshold are pruned in index order
    until the count is exact.
    """
    if num_pruned <= 0:
        return np.ones(scores.size, dtype=bool)
    if num_pruned >= scores.size:
        return np.zeros(scores.size, dtype=bool)
    if scores.min() >= 0:
        # Magnitudes: already-pruned weights score 0 and go first, so rank only the live ones. np.compress,
        # unlike boolean indexing, is not slowed by a random zero pattern (0.3 ms instead of 2 ms for 784x300).
        live = np.compress(scores != 0, scores)
        more = num_pruned - (scores.size - live.size)
        threshold = np.partition(live, more - 1)[more - 1] if more > 0 else scores.dtype.type(0)
    else:
        threshold = np.partition(scores, num_pruned - 1)[num_pruned - 1]
    keep = scores > threshold
    surplus = num_pruned - (scores.size - int(np.count_nonzero(keep)))  # < 0: too many ties pruned
    if surplus < 0:
        keep[np.flatnonzero(scores == threshold)[surplus:]] = True
    return keep


def _ranked_together(scores, budget, caps):
    """Keep-masks for groups ranked against one threshold, `budget` units pruned in all, none beyond its cap.

    A group whose share would pass its cap is pruned to the cap on its own and the rest of
    the budget is ranked again among the others (water filling), so the total stays exact
    whenever the caps allow it. Without a capped group this is a single ranking.
    """
    parts = [None] * len(scores)
    while any(part is None for part in parts):
        free = [i for i, part in enumerate(parts) if part is None]
        pool = scores[free[0]] if len(free) == 1 else np.concatenate([scores[i] for i in free])
        pieces = np.split(keep_largest(pool, min(budget, pool.size)), np.cumsum([scores[i].size for i in free])[:-1])
        over = [i for i, piece in zip(free, pieces) if scores[i].size - int(np.count_nonzero(piece)) > caps[i]]
        if not over:
            for i, piece in zip(free, pieces):
                parts[i] = piece
            break
        for i in over:
            parts[i] = keep_largest(scores[i], caps[i])
            budget -= caps[i]
    return parts


def _nan_highest(scores):
    return np.where(np.isnan(scores), np.inf, scores) if np.isnan(scores).any() else scores


def allocate(scores, sparsity, scope="layer", max_sparsity=None, round_to=None, overrides=None):
    """1-D boolean keep-masks, one per group, that prune the units of lowest score to reach `sparsity`.

    Args:
        scores: one 1-D array of unit scores per group; None for a group kept whole.
        sparsity: the fraction of units to prune.
        scope: "layer" (each group loses `sparsity` of its units) or "global" (one
            ranking across the groups, each pruned as far as its scores fall below the
            shared threshold).
        max_sparsity: the most of any group's units that may be pruned; None: all but one.
        round_to: every group keeps a multiple of this many units (or all of them).
        overrides: `{group index: sparsity}` for groups pruned on their own, at their own
            sparsity, whatever the scope.

    Returns:
        A list with a boolean keep-mask per group (all True for a group scored None).
    """
    check_scope(scope)
    overrides = overrides or {}
    scores = [None if s is None else _nan_highest(np.asarray(s).reshape(-1)) for s in scores]
    caps = [0 if s is None else most_prunable(s.size, max_sparsity) for s in scores]
    keep = [np.ones(0 if s is None else s.size, bool) for s in scores]
    ranked = [i for i, s in enumerate(scores) if s is not None and i not in overrides and scope == "global"]
    for i, s in enumerate(scores):
        if s is not None and i not in ranked:
            keep[i] = keep_largest(s, min(caps[i], pruned_count(overrides.get(i, sparsity), s.size)))
    if ranked:
        budget = pruned_count(sparsity, sum(scores[i].size for i in ranked))
        for i, part in zip(ranked, _ranked_together([scores[i] for i in ranked], budget, [caps[i] for i in ranked])):
            keep[i] = part
    if round_to:
        for i, s in enumerate(scores):
            count = s.size - int(np.count_nonzero(keep[i])) if s is not None else 0
            if rounded_count(s.size if s is not None else 0, count, round_to) != count:
                keep[i] = keep_largest(s, rounded_count(s.size, count, round_to))
    return keep
