"""Structured pruning: channel groups of a Keras graph, and shrinking models to fewer channels.

`channel_groups(model)` finds which channels must be removed together (a residual
`Add` ties the channels of every branch it sums); `shrink(model)` removes the
groups whose channels are exactly zero and returns a physically smaller model;
`model_cost(model)` counts its parameters and FLOPs.
"""
