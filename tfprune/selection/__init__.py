"""Selection: which units to prune for a target sparsity (allocation across layers and channel sets)."""
