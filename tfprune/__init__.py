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

from tfprune.api import load_model, prune_low_magnitude, prune_scope, strip_pruning
from tfprune.callbacks import PruningSummaries, UpdatePruningStep
from tfprune.controller import PruningController
from tfprune.policy import PruneForLatencyOnXNNPack, PruningPolicy
from tfprune.registry import PrunableLayer
from tfprune.report import format_report, sparsity_report
from tfprune.schedules import ConstantSparsity, PolynomialDecay, PruningSchedule
from tfprune.wrapper import PruneLowMagnitude

__version__ = "0.1.0"

__all__ = [
    "ConstantSparsity",
    "PolynomialDecay",
    "PrunableLayer",
    "PruneLowMagnitude",
    "PruneForLatencyOnXNNPack",
    "PruningController",
    "PruningPolicy",
    "PruningSchedule",
    "PruningSummaries",
    "UpdatePruningStep",
    "format_report",
    "load_model",
    "prune_low_magnitude",
    "prune_scope",
    "sparsity_report",
    "strip_pruning",
]
