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
    """(variable path, value used in inference, held at max_layer_sparsity?) per prunable weight."""
    if isinstance(layer, PruneLowMagnitude):
        return [
            (w.path, value, _held_at_cap(layer, ops.convert_to_numpy(mask)))
            for (w, value), mask in zip(layer.masked_weights(), layer.masks)
        ]
    return [(w.path, ops.convert_to_numpy(w.value), False) for w in registry.prunable_weights(layer)]


def _held_at_cap(wrapper, mask):
    """True if global ranking pruned this weight as far as `max_layer_sparsity` allows (within one block)."""
    if wrapper.max_layer_sparsity is None:
        return False
    rows, cols = wrapper.granularity.block_size
    pruned = 1.0 - np.count_nonzero(mask) / mask.size
    return pruned > wrapper.max_layer_sparsity - rows * cols / mask.size


def sparsity_report(model):
    """Per-weight and total sparsity of the prunable weights of `model`.

    Returns a dict: `{"layers": [{"layer", "weight", "shape", "params", "nonzeros",
    "sparsity", "at_cap"}, ...], "total": {"params", "nonzeros", "sparsity"}}`, where "weight" is the
    variable path (unique in the model, e.g. "mha/query/kernel") and "at_cap" says that
    global pruning holds the weight at `max_layer_sparsity` (it ranked more of it below
    the threshold).

    Example:

    >>> report = sparsity_report(model)
    >>> print(format_report(report))
    """
    rows = []
    for layer in _prunable_layers(model):
        name = layer.layer.name if isinstance(layer, PruneLowMagnitude) else layer.name
        for weight_name, value, at_cap in _effective_weights(layer):
            nonzeros = int(np.count_nonzero(value))
            rows.append(
                {
                    "layer": name,
                    "weight": weight_name,
                    "shape": list(value.shape),
                    "params": int(value.size),
                    "nonzeros": nonzeros,
                    "sparsity": 1.0 - nonzeros / value.size if value.size else 0.0,
                    "at_cap": at_cap,
                }
            )
    params = sum(r["params"] for r in rows)
    nonzeros = sum(r["nonzeros"] for r in rows)
    total = {"params": params, "nonzeros": nonzeros, "sparsity": 1.0 - nonzeros / params if params else 0.0}
    return {"layers": rows, "total": total}


def format_report(report):
    """The report as a fixed-width text table; weights held at max_layer_sparsity are starred."""
    lines = [f"{'layer':<28} {'weight':<40} {'shape':<18} {'params':>9} {'non-zero':>9} {'sparsity':>9}"]
    for r in report["layers"]:
        shape = "x".join(str(d) for d in r["shape"])
        star = "*" if r.get("at_cap") else ""
        lines.append(
            f"{r['layer']:<28} {r['weight']:<40} {shape:<18} {r['params']:>9} {r['nonzeros']:>9} "
            f"{r['sparsity']:>9.2%}{star}"
        )
    t = report["total"]
    lines.append(f"{'total':<28} {'':<40} {'':<18} {t['params']:>9} {t['nonzeros']:>9} {t['sparsity']:>9.2%}")
    held = sum(1 for r in report["layers"] if r.get("at_cap"))
    if held:
        lines.append(f"* {held} weight(s) held at max_layer_sparsity: global ranking would have pruned them further.")
    return "\n".join(lines)
