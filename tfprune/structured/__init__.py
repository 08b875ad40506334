"""Structured pruning: whole channels, units and attention heads, removed so that models get faster.

- `channel_groups(model)` finds which channels must go together (a residual `Add`
  ties the channels of every branch it sums): `labels`, `rules`, `analysis`.
- `prune_channels(model, schedule, importance=...)` masks whole groups during `fit`
  (`wrapper`, `controller`; scores from `tfprune.criteria.importance`), optionally with a `GroupLasso` or
  `L0Gates` penalty (`penalties`).
- `shrink(model)` removes the groups that are exactly zero and returns a physically
  smaller plain Keras model; `model_cost(model)` counts parameters and FLOPs (`cost`).
"""
