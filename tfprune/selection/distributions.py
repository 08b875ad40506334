"""How a model's target sparsity is spread over its weights: Erdős–Rényi-Kernel (ERK).

ERK (Evci et al. 2020, "Rigging the Lottery", after the Erdős–Rényi graphs of Mocanu et al.
2018) gives a weight of shape (k_h, k_w, n_in, n_out) a density proportional to
(k_h + k_w + n_in + n_out) / (k_h · k_w · n_in · n_out), scaled so that all weights together
keep (1 - sparsity) of their entries: large layers are pruned more than small ones, so the
first convolution and the classifier keep more of their few weights. A weight whose density
would exceed 1 is kept dense and the others are scaled again, until none does, as RigL's
`get_sparsities_erdos_renyi` and jaxpruner's `erk` do. With `max_sparsity`, no weight is pruned
beyond it (and the total falls short of the target where that caps one).

The other distributions are the pruning scopes: "layer" (uniform, every weight at the target)
and "global" (one magnitude threshold over all weights).

Example:

>>> [round(s, 3) for s in erk_sparsities([(784, 300), (300, 100), (100, 10)], 0.9)]  # LeNet-300-100: 90% in all
[0.92, 0.77, 0.0]
"""

import math

import numpy as np

# The distributions the papers name, as the pruning scope that spreads a target that way.
SCOPE_OF_DISTRIBUTION = {"global": "global", "uniform": "layer", "erk": "erk"}


def scope_of(distribution):
    """The pruning scope of a distribution name ("global", "uniform", "erk"), or a ValueError listing them."""
    if distribution not in SCOPE_OF_DISTRIBUTION:
        raise ValueError(f"`distribution` must be one of {sorted(SCOPE_OF_DISTRIBUTION)}, got {distribution!r}.")
    return SCOPE_OF_DISTRIBUTION[distribution]


def erk_sparsities(shapes, sparsity, max_sparsity=None):
    """The sparsity of each weight of `shapes` under ERK, such that all together reach `sparsity`.

    Args:
        shapes: the weights' shapes (any rank: every dimension counts, as RigL's kernels do).
        sparsity: the fraction of all their entries to prune, in [0, 1).
        max_sparsity: no weight is pruned beyond this (then the total falls short of `sparsity`).

    Returns:
        A list of sparsities, one per shape.
    """
    if not 0 <= sparsity < 1:
        raise ValueError(f"ERK needs a sparsity in [0, 1), got {sparsity!r}.")
    sizes = np.array([math.prod(shape) for shape in shapes], dtype=np.float64)
    raw = np.array([sum(shape) / math.prod(shape) for shape in shapes], dtype=np.float64)
    dense = np.zeros(len(shapes), bool)
    while True:
        # densities scale * raw for the sparse weights, 1 for the dense ones, keep (1 - sparsity) of all entries
        kept = (1 - sparsity) * sizes.sum() - sizes[dense].sum()
        scale = kept / max((raw * sizes)[~dense].sum(), 1e-300)
        too_dense = ~dense & (scale * raw > 1)
        if not too_dense.any():
            break
        dense |= raw == raw[too_dense].max()  # the densest first, then scale again (RigL)
    result = np.where(dense, 0.0, 1 - np.minimum(scale * raw, 1.0))
    if max_sparsity is not None:
        result = np.minimum(result, max_sparsity)
    return result.clip(0.0, 1.0).tolist()
