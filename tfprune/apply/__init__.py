"""Acting on a model: the one pruning wrapper, its mask constraint, L0 gates, Taylor recording and penalties."""
