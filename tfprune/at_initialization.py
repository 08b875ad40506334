"""Pruning at initialization: SNIP and GraSP score every weight once, before training, and fix the masks.

- SNIP (Lee et al. 2019, "Single-shot network pruning based on connection sensitivity"): a
  weight's score is |w · g|, g the gradient of the loss over `data`; the lowest go. With
  `iterations=K` (iterative SNIP, de Jorge et al. 2021) the density falls to (1 - sparsity)^(k/K)
  in K rounds, each scored at the weights the previous rounds kept.
- GraSP (Wang et al. 2020, "Picking winning tickets before training by preserving gradient
  flow"): a weight's score is w · (H g), H the Hessian of the loss; the paper removes the
  weights whose -w · Hg is largest, so those whose w · Hg is smallest go. H g comes from two
  gradient passes (`criteria.gradients.hessian_products`).

Both return a model wrapped by `prune_low_magnitude` with a `FixedMasks` schedule: train it with
`fit` and `UpdatePruningStep`, and the masks stay. `distribution` spreads the sparsity as the
papers do ("global": one threshold over all weights) or per weight ("uniform", "erk").

Example:

```python
pruned = tfprune.snip(model, (x[:512], y[:512]), 0.9, loss="sparse_categorical_crossentropy")
pruned.compile(...)
pruned.fit(x, y, epochs=10, callbacks=[tfprune.UpdatePruningStep()])   # masks fixed at 90%
```
"""

import warnings

import keras
import numpy as np

from tfprune.api import prune_low_magnitude
from tfprune.apply.wrapper import pruning_wrappers
from tfprune.criteria.gradients import hessian_products, loss_gradients
from tfprune.schedules import FixedMasks
from tfprune.selection.distributions import scope_of
from tfprune.weight_pruning import apply_scored_masks


def snip(model, data, sparsity, distribution="global", loss=None, iterations=1, max_layer_sparsity=None):
    """`model` pruned at initialization by SNIP: the weights with the lowest |w · g| go, the masks fixed.

    Args:
        model: a built Keras model, before training (it is copied, not modified).
        data: `(x, y)`, `(x, y, sample_weight)` or a finite dataset of batches: the loss's gradient (of
            each batch's mean) is summed over it.
        sparsity: the fraction of prunable weights to prune, in (0, 1).
        distribution: "global" (one threshold, as the paper), "uniform" (every weight at `sparsity`) or "erk".
        loss: the loss; default the one `model` was compiled with.
        iterations: rounds of iterative SNIP (1: the paper's single shot).
        max_layer_sparsity: with "global" or "erk", no weight pruned beyond this (default 0.99).

    Returns:
        The pruned model (`PruneLowMagnitude` wrappers, `FixedMasks` schedule).
    """
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"`iterations` must be an integer >= 1, got {iterations!r}.")
    pruned, wrappers, loss = _wrapped(model, data, sparsity, distribution, loss, max_layer_sparsity)
    weights = [v for w in wrappers for v in w.pruned_weights]
    masks = [mask for w in wrappers for mask in w.masks]
    for round_ in range(1, iterations + 1):
        gradients = loss_gradients(pruned, data, loss, weights)
        numpy = keras.ops.convert_to_numpy
        scores = [np.where(numpy(mask) > 0, np.abs(numpy(w) * g), -np.inf)  # what earlier rounds pruned stays
                  for w, g, mask in zip(weights, gradients, masks)]
        apply_scored_masks(wrappers, scores, 1 - (1 - sparsity) ** (round_ / iterations), scope_of(distribution))
    return pruned


def grasp(model, data, sparsity, distribution="global", loss=None, max_layer_sparsity=None):
    """`model` pruned at initialization by GraSP: the weights with the lowest w · Hg go, the masks fixed.

    Arguments as `snip` (without iterations).
    """
    pruned, wrappers, loss = _wrapped(model, data, sparsity, distribution, loss, max_layer_sparsity)
    weights = [v for w in wrappers for v in w.pruned_weights]
    gradients = loss_gradients(pruned, data, loss, weights)
    products = hessian_products(pruned, data, loss, weights, gradients)
    scores = [keras.ops.convert_to_numpy(w) * hg for w, hg in zip(weights, products)]
    apply_scored_masks(wrappers, scores, sparsity, scope_of(distribution))
    return pruned


def _wrapped(model, data, sparsity, distribution, loss, max_layer_sparsity):
    scope = scope_of(distribution)
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0 < sparsity < 1:
        raise ValueError(f"`sparsity` must be in (0, 1), the fraction of prunable weights to prune; got {sparsity!r}.")
    if data is None:
        raise ValueError("Pruning at initialization scores weights by the loss's gradients: give data=(x, y) or a "
                         "dataset of batches.")
    loss = loss if loss is not None else getattr(model, "loss", None)
    if loss is None:
        raise ValueError("Give loss=... (e.g. 'sparse_categorical_crossentropy'), or compile the model with its loss.")
    with warnings.catch_warnings():  # its masks are set right after
        warnings.filterwarnings("ignore", message="FixedMasks does not set the first masks")
        pruned = prune_low_magnitude(model, FixedMasks(sparsity), scope=scope, max_layer_sparsity=max_layer_sparsity)
    return pruned, [w for w in pruning_wrappers(pruned) if w.masks], loss

