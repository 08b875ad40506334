"""Sparsity reports: per-layer and total sparsity of the prunable weights of a model.

Works on pruned models (counting `weight * mask`, what inference uses) and on
plain Keras models (counting exact zeros), so the same table describes a model
before pruning, during it and after `strip_pruning`.
"""

import numpy as np
from keras import ops

from tfprune import registry
from tfprune.wrapper import PruneLowMagnitude


def _prunable_layers(layer):
    """Yields the outermost wrappers (with weights to prune) and prunable layers inside `layer`, depth first."""
    for sub in layer._layers:
        if isinstance(sub, PruneLowMagnitude):
            if sub.built and sub.masks:
                yield sub
        elif registry.is_prunable(sub) and sub.built:
            yield sub
        else:
            yield from _prunable_layers(sub)


def _effective_weights(layer):
    if isinstance(layer, PruneLowMagnitude):
        return [(w.path, value) for w, value in layer.masked_weights()]
    return [(w.path, ops.convert_to_numpy(w.value)) for w in registry.prunable_weights(layer)]


def sparsity_report(model):
    """Per-weight and total sparsity of the prunable weights of `model`.

    Returns a dict: `{"layers": [{"layer", "weight", "shape", "params", "nonzeros",
    "sparsity"}, ...], "total": {"params", "nonzeros", "sparsity"}}`, where "weight" is the
    variable path (unique in the model, e.g. "mha/query/kernel").

    Example:

    >>> report = sparsity_report(model)
    >>> print(format_report(report))
    """
    rows = []
    for layer in _prunable_layers(model):
        name = layer.layer.name if isinstance(layer, PruneLowMagnitude) else layer.name
        for weight_name, value in _effective_weights(layer):
            nonzeros = int(np.count_nonzero(value))
            rows.append(
                {
                    "layer": name,
                    "weight": weight_name,
                    "shape": list(value.shape),
                    "params": int(value.size),
                    "nonzeros": nonzeros,
                    "sparsity": 1.0 - nonzeros / value.size if value.size else 0.0,
                }
            )
    params = sum(r["params"] for r in rows)
    nonzeros = sum(r["nonzeros"] for r in rows)
    total = {"params": params, "nonzeros": nonzeros, "sparsity": 1.0 - nonzeros / params if params else 0.0}
    return {"layers": rows, "total": total}


def format_report(report):
    """The report as a fixed-width text table."""
    lines = [f"{'layer':<28} {'weight':<40} {'shape':<18} {'params':>9} {'non-zero':>9} {'sparsity':>9}"]
    for r in report["layers"]:
        shape = "x".join(str(d) for d in r["shape"])
        lines.append(
            f"{r['layer']:<28} {r['weight']:<40} {shape:<18} {r['params']:>9} {r['nonzeros']:>9} {r['sparsity']:>9.2%}"
        )
    t = report["total"]
    lines.append(f"{'total':<28} {'':<40} {'':<18} {t['params']:>9} {t['nonzeros']:>9} {t['sparsity']:>9.2%}")
    return "\n".join(lines)
