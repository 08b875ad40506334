"""How units are scored before the lowest are pruned: one `Importance` family for weight entries and
channel groups alike."""
