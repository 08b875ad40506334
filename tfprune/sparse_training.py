"""`sparse_training`: a model sparse from its first step whose weights move while it trains (SET, RigL), or stay
("static", RigL's baseline: random masks, fixed).

The model is wrapped by `prune_low_magnitude` with a `DynamicSparsity` schedule and its first
masks set at `sparsity`, spread by `distribution`: at random within each weight for "uniform"
and "erk" (as the papers start), by one magnitude threshold over all weights for "global". Train
it with `fit` and `UpdatePruningStep`, as any pruned model; see `tfprune.dynamic_sparsity` for
how the weights move.

Example:

```python
steps = epochs * steps_per_epoch
sparse = tfprune.sparse_training(model, sparsity=0.9, method="rigl", end_step=int(0.75 * steps))
sparse.compile(keras.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy")
sparse.fit(x, y, epochs=epochs, callbacks=[tfprune.UpdatePruningStep()])
```
"""

import numpy as np

from tfprune.backend_calls import host_value
from tfprune.dynamic_sparsity import DynamicSparsity
from tfprune.one_shot import wrapped_for_masks
from tfprune.schedules import FixedMasks
from tfprune.selection.distributions import scope_of
from tfprune.validation import PRUNED_FRACTION, check_sparsity
from tfprune.weight_pruning import apply_scored_masks


def sparse_training(model, sparsity=0.9, method="set", distribution="erk", update_every=100, drop_fraction=0.3,
                    drop_schedule="cosine", end_step=None, seed=0, max_layer_sparsity=None, dense_layers=(), copy=True):
    """`model` (copied) sparse at `sparsity` from the first step, its weights moved by SET or RigL while it trains.

    Args:
        model: a built Keras model, usually before training.
        sparsity: the fraction of prunable weights pruned throughout, in (0, 1).
        method: "set" (grow at random), "rigl" (grow where the gradient is largest) or "static" (the first masks
            stay: sparse training with a fixed random topology, the papers' baseline).
        distribution: "erk" (Erdős–Rényi-Kernel, RigL's default), "uniform" or "global" (by the initial
            magnitudes: layers initialized small, such as embeddings at ±0.05, lose the most).
        update_every: training steps between updates.
        drop_fraction: the fraction of each weight's active entries moved at the first update (RigL: 0.3).
        drop_schedule: "cosine" (the fraction decays to 0 at `end_step`) or "constant".
        end_step: the last step that moves weights (RigL: 75% of the run); not used by "static".
        seed: the seed of the first masks and of SET's growth.
        max_layer_sparsity: with "erk" or "global", no weight pruned beyond this (default 0.99).
        dense_layers: names of layers left dense (RigL keeps the first convolution dense with "uniform").
        copy: False prunes your model's own layers in place (for layers that cannot be re-created from their
            config), as `prune_low_magnitude(copy=False)` does.

    Returns:
        The pruned model (`PruneLowMagnitude` wrappers with a `DynamicSparsity` schedule, `FixedMasks` for "static").
    """
    check_sparsity("sparsity", sparsity, zero_allowed=False, meaning=PRUNED_FRACTION)
    if method == "static":
        schedule = FixedMasks(sparsity)
    elif end_step is None:
        raise ValueError("Give end_step, the last training step that moves weights: RigL stops at 75% of the run, "
                         "end_step=int(0.75 * epochs * steps_per_epoch).")
    else:
        schedule = DynamicSparsity(sparsity, end_step, method, update_every, drop_fraction, drop_schedule, seed)
    pruned, wrappers = wrapped_for_masks(model, schedule, distribution, max_layer_sparsity, dense_layers, copy=copy)
    weights = [v for w in wrappers for v in w.pruned_weights]
    scope = scope_of(distribution)
    if scope == "global":
        scores = [np.abs(host_value(v)) for v in weights]
    else:
        rng = np.random.default_rng((seed, 0))
        scores = [rng.random(v.shape) for v in weights]
    apply_scored_masks(wrappers, scores, sparsity, scope)
    return pruned

