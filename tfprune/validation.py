"""Argument checks shared by schedules and granularities."""

import math
import numbers

import numpy as np


def is_integer(value):
    """True for Python and NumPy integers (tfmot's tutorial passes np.int32 steps), not for bools."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


PRUNED_FRACTION = "the fraction of prunable weights to prune"  # what a one-shot `sparsity` means


def check_sparsity(name, value, zero_allowed=True, meaning="the fraction of weights set to zero: 0.8 keeps 20% of them"):
    """Raises ValueError unless the argument `name` is a number in [0, 1) (in (0, 1) unless `zero_allowed`), saying
    what it means.

    >>> check_sparsity("sparsity", 1.0)
    Traceback (most recent call last):
    ValueError: `sparsity` must be in [0, 1), the fraction of weights set to zero: 0.8 keeps 20% of them; got 1.0.
    """
    in_range = isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(value) and (
        0 <= value < 1 if zero_allowed else 0 < value < 1)
    if not in_range:
        raise ValueError(f"`{name}` must be in {'[0, 1)' if zero_allowed else '(0, 1)'}, {meaning}; got {value!r}.")
