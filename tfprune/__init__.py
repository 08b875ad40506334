"""tfprune: neural-network pruning for Keras 3 on TensorFlow.

Example:

```python
import tfprune

pruned = tfprune.prune_low_magnitude(model, tfprune.PolynomialDecay(0.0, 0.8, 0, 1000))
pruned.compile(...)
pruned.fit(x, y, callbacks=[tfprune.UpdatePruningStep()])
final = tfprune.strip_pruning(pruned)
```
"""

import os
import sys

from tfprune.lazy import attribute_loader

__version__ = "0.1.0"

_PUBLIC = {
    "ConstantSparsity": "tfprune.schedules",
    "DynamicSparsity": "tfprune.dynamic_sparsity",
    "FixedMasks": "tfprune.schedules",
    "FlopsBudget": "tfprune.selection.budget",
    "ParamsBudget": "tfprune.selection.budget",
    "GroupLasso": "tfprune.apply.penalties",
    "Importance": "tfprune.criteria.importance",
    "Penalty": "tfprune.apply.penalties",
    "PolynomialDecay": "tfprune.schedules",
    "PruneChannels": "tfprune.apply.wrapper",
    "PrunableLayer": "tfprune.registry",
    "PruneForLatencyOnXNNPack": "tfprune.policy",
    "PruneLowMagnitude": "tfprune.apply.wrapper",
    "PruningController": "tfprune.controller",
    "PruningPolicy": "tfprune.policy",
    "PruningSchedule": "tfprune.schedules",
    "PruningSummaries": "tfprune.callbacks",
    "UpdatePruningStep": "tfprune.callbacks",
    "channel_groups": "tfprune.structured.analysis",
    "IterativePruning": "tfprune.iterative",
    "L0Gates": "tfprune.apply.penalties",
    "LatencyBudget": "tfprune.selection.budget",
    "LatencyTable": "tfprune.structured.latency_table",
    "LearningRateRewinding": "tfprune.rewinding",
    "WeightRewinding": "tfprune.rewinding",
    "apply_masks": "tfprune.stateless",
    "fold_gates": "tfprune.structured.prune",
    "format_report": "tfprune.report",
    "grasp": "tfprune.one_shot",
    "load_model": "tfprune.api",
    "model_cost": "tfprune.structured.cost",
    "plot_pruning_curves": "tfprune.iterative",
    "prune_channels": "tfprune.structured.prune",
    "prune_groups_below": "tfprune.structured.prune",
    "prune_low_magnitude": "tfprune.api",
    "prune_once": "tfprune.one_shot",
    "prune_to_budget": "tfprune.structured.prune",
    "prune_scope": "tfprune.api",
    "register_layer": "tfprune.layers.table",
    "shrink": "tfprune.structured.shrink",
    "snip": "tfprune.one_shot",
    "sparse_training": "tfprune.sparse_training",
    "sparsity_report": "tfprune.report",
    "strip_pruning": "tfprune.api",
}
__all__ = sorted(_PUBLIC)
__getattr__ = attribute_loader("tfprune", globals(), _PUBLIC)


def register_classes():
    """Imports every public module, which registers tfprune's classes with Keras so that
    keras.models.load_model reads pruned models. `import tfprune` does it, except in the
    `tfprune` command, whose commands that read .keras files call it."""
    for name in _PUBLIC:
        __getattr__(name)


def _started_as_command():
    """True in the `tfprune` command: its installed script, or `python -m tfprune.cli`."""
    script = os.path.splitext(os.path.basename(sys.argv[0] if sys.argv else ""))[0]
    module = any(flag == "-m" and name == "tfprune.cli" for flag, name in zip(sys.orig_argv, sys.orig_argv[1:]))
    return script == "tfprune" or module


# The `tfprune` command imports modules as each command needs them: `tfprune --help` or `tfprune bench`
# then start in well under a second instead of importing TensorFlow.
if not _started_as_command():
    register_classes()
