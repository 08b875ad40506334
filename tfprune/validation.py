"""Argument checks shared by schedules and granularities."""

import numpy as np


def is_integer(value):
    """True for Python and NumPy integers (tfmot's tutorial passes np.int32 steps), not for bools."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_open_sparsity(sparsity):
    """Raises ValueError unless `sparsity` (of a model pruned at once, in one call) is a number in (0, 1)."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float, np.floating)) or not 0 < sparsity < 1:
        raise ValueError(f"`sparsity` must be in (0, 1), the fraction of prunable weights to prune; got {sparsity!r}.")
