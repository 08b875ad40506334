"""What tfprune knows about each kind of layer: one table (`table.py`) of prunable weights and their axes,
channel flow and shrinking, and FLOPs."""
