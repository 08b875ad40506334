"""Argument checks shared by schedules and granularities."""

import numpy as np


def is_integer(value):
    """True for Python and NumPy integers (tfmot's tutorial passes np.int32 steps), not for bools."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
