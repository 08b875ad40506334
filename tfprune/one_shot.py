"""Pruning in one shot: every weight scored once and the masks fixed, before training (SNIP, GraSP) or after it
(`prune_once`, by any weight criterion).

- SNIP (Lee et al. 2019, "Single-shot network pruning based on connection sensitivity"): a
  weight's score is |w · g|, g the gradient of the loss over `data`; the lowest go. With
  `iterations=K` (iterative SNIP, de Jorge et al. 2021) the density falls to (1 - sparsity)^(k/K)
  in K rounds, each scored at the weights the previous rounds kept.
- GraSP (Wang et al. 2020, "Picking winning tickets before training by preserving gradient
  flow"): a weight's score is w · (H g), H the Hessian of the loss; the paper removes the
  weights whose -w · Hg is largest, so those whose w · Hg is smallest go. H g comes from two
  gradient passes (`criteria.gradients.hessian_products`).

`prune_once` scores a (trained) model by magnitude, LAMP, Optimal Brain Damage (its Fisher from
`data`) or Optimal Brain Surgeon (layer-wise, with its compensating update) and prunes it at once,
to fine-tune.

All return a model wrapped by `prune_low_magnitude` with a `FixedMasks` schedule: train it with
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
from tfprune.criteria import importance as importance_lib
from tfprune.criteria import second_order
from tfprune.backend_calls import host_value
from tfprune.criteria.gradients import fisher_diagonal, hessian_products, loss_gradients
from tfprune.policy import KeepDense
from tfprune.schedules import FixedMasks
from tfprune.selection.distributions import scope_of
from tfprune.validation import PRUNED_FRACTION, check_sparsity
from tfprune.weight_pruning import apply_scored_masks


def snip(model, data, sparsity, distribution="global", loss=None, iterations=1, max_layer_sparsity=None,
         dense_layers=(), copy=True):
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
        dense_layers: names of layers left dense (the papers often keep the first one).
        copy: False prunes your model's own layers in place (for layers that cannot be re-created from their
            config), as `prune_low_magnitude(copy=False)` does.

    Returns:
        The pruned model (`PruneLowMagnitude` wrappers with `importance.Saliency`, `FixedMasks` schedule).
    """
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"`iterations` must be an integer >= 1, got {iterations!r}.")
    loss = _gradient_loss(model, data, loss, "SNIP")
    check_sparsity("sparsity", sparsity, zero_allowed=False, meaning=PRUNED_FRACTION)
    pruned, wrappers = wrapped_for_masks(model, FixedMasks(sparsity), distribution, max_layer_sparsity, dense_layers,
                                         importance_lib.Saliency(), copy)
    masks = [mask for w in wrappers for mask in w.masks]
    for round_ in range(1, iterations + 1):
        scores, _ = _scores(pruned, wrappers, data, loss)
        scores = [np.where(host_value(mask) > 0, s, -np.inf) for s, mask in zip(scores, masks)]  # pruned stay
        apply_scored_masks(wrappers, scores, 1 - (1 - sparsity) ** (round_ / iterations), scope_of(distribution))
    return pruned


def grasp(model, data, sparsity, distribution="global", loss=None, max_layer_sparsity=None, temperature=None,
          dense_layers=(), copy=True):
    """`model` pruned at initialization by GraSP: the weights with the lowest w · Hg go, the masks fixed.

    Arguments as `snip` (without iterations), and:
        temperature: the logits are divided by it in the loss that g and H come from, as the paper's code does
            (T = 200, the default when the loss takes logits: a Keras loss object with `from_logits=True`). A
            loss of probabilities (such as the name 'sparse_categorical_crossentropy') is used as it is.
    """
    return prune_once(model, sparsity, importance_lib.GraSP(temperature), data, loss, distribution,
                      max_layer_sparsity, dense_layers, copy)


def prune_once(model, sparsity, importance="magnitude", data=None, loss=None, distribution="global",
               max_layer_sparsity=None, dense_layers=(), copy=True):
    """`model` pruned now to `sparsity` by `importance`, the masks fixed: one-shot pruning, to fine-tune after.

    Args:
        model: a built Keras model, usually trained (it is copied, not modified).
        sparsity: the fraction of prunable weights to prune, in (0, 1).
        importance: "magnitude", "lamp" (with "global", each layer's sparsity from LAMP scores), "obd" (Optimal
            Brain Damage: 1/2 x Fisher x w^2, the Fisher from `data`), "obs" (Optimal Brain Surgeon, layer-wise:
            scores from each layer's inputs over `data`, and the kept weights moved to make up for the pruned;
            Dense and Conv2D layers, `criteria.second_order`), "saliency" (SNIP's |w · g|), "grasp", "movement"
            (-w · g of one pass over `data`) or an `Importance` of single weights.
        data: `(x, y)`, `(x, y, sample_weight)` or a finite dataset, for criteria that read gradients;
            `(x, y)` or the inputs `x` (arrays) for "obs".
        loss: the loss for `data`; default the one `model` was compiled with.
        distribution: "global" (one threshold over all weights), "uniform" or "erk".
        max_layer_sparsity: with "global" or "erk", no weight pruned beyond this (default 0.99).
        dense_layers: names of layers left dense.
        copy: False prunes your model's own layers in place, as in `snip`.

    Returns:
        The pruned model (`PruneLowMagnitude` wrappers with this importance, `FixedMasks` schedule).

    Example:

    >>> pruned = tfprune.prune_once(trained, 0.9, "obd", data=(x[:2048], y[:2048]))
    """
    importance = importance_lib.get(importance)
    if importance.statistic == "inverse_hessian_diagonal" and data is None:
        raise ValueError("OBS scores weights by each layer's inputs: give data=(x, y) or the inputs x.")
    if importance.statistic not in (None, "inverse_hessian_diagonal"):
        loss = _gradient_loss(model, data, loss, type(importance).__name__)
    if importance.statistic == "hessian_gradient":
        _tempered(loss, importance.temperature)  # checked before the model is wrapped (in place with copy=False)
    check_sparsity("sparsity", sparsity, zero_allowed=False, meaning=PRUNED_FRACTION)
    pruned, wrappers = wrapped_for_masks(model, FixedMasks(sparsity), distribution, max_layer_sparsity, dense_layers,
                                         importance, copy)
    scores, compensate = _scores(pruned, wrappers, data, loss)
    apply_scored_masks(wrappers, scores, sparsity, scope_of(distribution))
    compensate()
    return pruned


def _scores(pruned, wrappers, data, loss):
    """The scores of every pruned weight of `wrappers` by their importance, with the statistic it reads computed
    over `data`; and a function to call once the masks are set (Optimal Brain Surgeon's update, else nothing)."""
    importance = wrappers[0].importance  # one call: the same in every wrapper
    pairs = [(w, v) for w in wrappers for v in w.pruned_weights]
    weights = [v for _, v in pairs]
    dense = [host_value(v) for v in weights]
    statistic, compensate = importance.statistic, lambda: None
    if statistic == "squares":
        statistics = fisher_diagonal(pruned, data, loss, weights)
    elif statistic == "movement":
        statistics = [-value * g for value, g in zip(dense, loss_gradients(pruned, data, loss, weights))]
    elif statistic == "hessian_gradient":
        tempered = _tempered(loss, importance.temperature)
        gradients = loss_gradients(pruned, data, tempered, weights)
        products = hessian_products(pruned, data, tempered, weights, gradients)
        statistics = [value * hg for value, hg in zip(dense, products)]
    elif statistic == "inverse_hessian_diagonal":
        hessians = second_order.input_hessians(pruned, wrappers, data)  # Dense and Conv2D: one pruned kernel each
        statistics = [second_order.inverse_diagonal(hessians[w], v.shape) for w in wrappers for v in w.pruned_weights]

        def compensate():  # Optimal Brain Surgeon moves the kept weights to make up for the pruned ones
            for (w, kernel), value in zip(pairs, dense):
                kernel.assign(second_order.compensated(value, w.weight_mask(kernel), hessians[w]).astype(value.dtype))
    else:
        statistics = [None] * len(weights)
    scores = [importance.entry_scores(value, w.layer, v.name, statistic)
              for (w, v), value, statistic in zip(pairs, dense, statistics)]
    return scores, compensate


def _tempered(loss, temperature):
    """`loss` of the logits divided by `temperature` (default 200 for a loss of logits, else none)."""
    from_logits = isinstance(loss, keras.losses.Loss) and loss.get_config().get("from_logits") is True
    if temperature is None:
        temperature = 200.0 if from_logits else 1.0
    elif isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature <= 0:
        raise ValueError(f"`temperature` must be a positive number, got {temperature!r}.")
    elif temperature != 1 and not from_logits:
        raise ValueError(f"temperature={temperature} divides logits, but the loss {loss!r} does not take logits: pass "
                         "a Keras loss object with from_logits=True (and a model without a final softmax).")
    if temperature == 1:
        return loss
    return lambda y_true, y_pred: loss.call(y_true, y_pred / temperature)  # per example: Keras weighs and averages


def wrapped_for_masks(model, schedule, distribution, max_layer_sparsity=None, dense_layers=(), importance="magnitude",
                      copy=True):
    """`model` wrapped by `prune_low_magnitude` with `schedule` (whose masks the caller sets) but for `dense_layers`
    (a copy, or in place with `copy=False`), and its wrappers that have masks; a ValueError if it has none."""
    scope = scope_of(distribution)
    with warnings.catch_warnings():  # the caller sets the masks right after
        warnings.filterwarnings("ignore", message=f"{type(schedule).__name__} does not set the first masks")
        pruned = prune_low_magnitude(model, schedule, scope=scope, max_layer_sparsity=max_layer_sparsity,
                                     importance=importance, pruning_policy=KeepDense(dense_layers), copy=copy)
    wrappers = [w for w in pruning_wrappers(pruned) if w.masks]
    if not wrappers:
        raise ValueError(f"Model '{model.name}' has no weight tfprune can prune (Dense, Conv, ...): there is nothing "
                         "to prune.")
    return pruned, wrappers


def _gradient_loss(model, data, loss, what):
    """The loss that `what` takes gradients of over `data`, checked: `loss`, or the one `model` was compiled with."""
    if data is None:
        raise ValueError(f"{what} scores weights by the loss's gradients: give data=(x, y) or a dataset of batches.")
    loss = loss if loss is not None else getattr(model, "loss", None)
    if loss is None:
        raise ValueError("Give loss=... (e.g. 'sparse_categorical_crossentropy'), or compile the model with its loss.")
    return loss
