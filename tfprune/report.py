"""Sparsity reports: per-layer and total sparsity of the prunable weights of a model.

Works on pruned models (counting `weight * mask`, what `strip_pruning` keeps, and
flagging weights alive under a zero mask) and on plain Keras models (counting exact
zeros), so the same table describes a model before pruning, during it and after
`strip_pruning`.
"""

import warnings

import numpy as np

from tfprune import registry
from tfprune.backend_calls import host_value
from tfprune.graph.traverse import outermost
from tfprune.messages import first_names
from tfprune.apply.wrapper import PruneChannels
from tfprune.apply.wrapper import PruneLowMagnitude, PruningWrapper


def _prunable_layers(layer):
    """The outermost wrappers (with weights to prune) and prunable layers inside `layer`, depth first."""
    found = outermost(layer, lambda sub: isinstance(sub, PruningWrapper) or (registry.is_prunable(sub) and sub.built))
    return [sub for sub in found if _has_weights_to_report(sub)]


def _has_weights_to_report(layer):
    if isinstance(layer, PruneLowMagnitude):
        return layer.built and bool(layer.masks)
    if isinstance(layer, PruneChannels):
        return layer.built and registry.is_prunable(layer.layer)
    return True


def _weights_and_masks(layer):
    """(variable path, value, mask or None, held at max_layer_sparsity?) per prunable weight."""
    if isinstance(layer, PruningWrapper):
        capped = isinstance(layer, PruneLowMagnitude)  # global weight ranking's max_layer_sparsity
        return [(w.path, host_value(w), mask, capped and _held_at_cap(layer, mask))
                for w, mask in ((w, layer.weight_mask(w)) for w in registry.prunable_weights(layer.layer))]
    return [(w.path, host_value(w), None, False) for w in registry.prunable_weights(layer)]


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
    "nonzero_under_mask", "sparsity", "at_cap"}, ...], "total": {"params", "nonzeros",
    "nonzero_under_mask", "sparsity"}}`, where "weight" is the variable path (unique in the
    model, e.g. "mha/query/kernel"), "nonzeros" counts `weight * mask` (what `strip_pruning`
    keeps), "nonzero_under_mask" counts the entries that are non-zero although their mask
    is zero (0 unless the weights were updated around the mask constraint; a warning says
    so) and "at_cap" says that global pruning holds the weight at `max_layer_sparsity` (it
    ranked more of it below the threshold).

    Example:

    >>> report = sparsity_report(model)
    >>> print(format_report(report))
    """
    rows = []
    for layer in _prunable_layers(model):
        name = layer.layer.name if isinstance(layer, PruningWrapper) else layer.name
        for weight_name, value, mask, at_cap in _weights_and_masks(layer):
            pruned = np.zeros(value.shape, bool) if mask is None else mask == 0
            nonzeros = int(np.count_nonzero(value[~pruned]))
            rows.append(
                {
                    "layer": name,
                    "weight": weight_name,
                    "shape": list(value.shape),
                    "params": int(value.size),
                    "nonzeros": nonzeros,
                    "nonzero_under_mask": int(np.count_nonzero(value[pruned])),
                    "sparsity": 1.0 - nonzeros / value.size if value.size else 0.0,
                    "at_cap": at_cap,
                }
            )
    params = sum(r["params"] for r in rows)
    nonzeros = sum(r["nonzeros"] for r in rows)
    under_mask = sum(r["nonzero_under_mask"] for r in rows)
    total = {"params": params, "nonzeros": nonzeros, "nonzero_under_mask": under_mask,
             "sparsity": 1.0 - nonzeros / params if params else 0.0}
    if under_mask:
        warnings.warn(_under_mask_message(rows), stacklevel=2)
    return {"layers": rows, "total": total}


def _under_mask_message(rows):
    leaking = [r for r in rows if r["nonzero_under_mask"]]
    names = first_names([f"'{r['weight']}' ({r['nonzero_under_mask']})" for r in leaking], shown=4)
    return (
        f"{sum(r['nonzero_under_mask'] for r in rows)} pruned weight entries are non-zero although their mask is "
        f"zero: {names}. The model computes with them, so it is denser than its masks say. They were "
        "updated around the mask constraint, which a Keras optimizer's apply()/apply_gradients() applies after "
        "each step with the masks' current values; writing the variables directly skips it, and a jitted "
        "stateless step sees the masks it was traced with. Update the weights through the optimizer, and in a "
        "stateless (JAX) step call tfprune.apply_masks() after optimizer.stateless_apply() (README: Custom "
        "training loops)."
    )


def format_report(report):
    """The report as a fixed-width text table; weights held at max_layer_sparsity are starred, and a last line
    explains a non-zero "masked!=0" column (entries alive under a zero mask)."""
    lines = [f"{'layer':<28} {'weight':<40} {'shape':<18} {'params':>9} {'non-zero':>9} {'masked!=0':>9} "
             f"{'sparsity':>9}"]
    for r in report["layers"]:
        shape = "x".join(str(d) for d in r["shape"])
        star = "*" if r.get("at_cap") else ""
        lines.append(
            f"{r['layer']:<28} {r['weight']:<40} {shape:<18} {r['params']:>9} {r['nonzeros']:>9} "
            f"{r.get('nonzero_under_mask', 0):>9} {r['sparsity']:>9.2%}{star}"
        )
    t = report["total"]
    under_mask = t.get("nonzero_under_mask", 0)  # absent from reports written before it was counted
    lines.append(f"{'total':<28} {'':<40} {'':<18} {t['params']:>9} {t['nonzeros']:>9} {under_mask:>9} "
                 f"{t['sparsity']:>9.2%}")
    held = sum(1 for r in report["layers"] if r.get("at_cap"))
    if held:
        lines.append(f"* {held} weight(s) held at max_layer_sparsity: global ranking or ERK would have pruned them further.")
    if under_mask:
        lines.append(f"! {under_mask} entries are non-zero under a zero mask (masked!=0): the model "
                     "computes with them, so it is denser than its masks say. Update weights through a Keras "
                     "optimizer, which keeps them at zero.")
    return "\n".join(lines)
