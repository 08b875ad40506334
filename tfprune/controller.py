"""Model-level mask updates: one view of every pruned layer, for layer and global scope.

Global pruning ranks the weights of all layers together, so the schedule and the
mask update live here rather than in each wrapper. `UpdatePruningStep` drives a
controller; custom training loops can drive one directly.
"""

import numpy as np

from tfprune import masks as masks_lib
from tfprune.wrapper import PruneLowMagnitude


def pruning_wrappers(model):
    """All `PruneLowMagnitude` layers inside `model` (nested models included)."""
    if isinstance(model, PruneLowMagnitude):
        return [model]
    return [layer for layer in model._flatten_layers(include_self=False) if isinstance(layer, PruneLowMagnitude)]


def _current_weights(wrapper):
    """The wrapper's pruned weights as they act now (weight * mask), read once per update."""
    return [value for _, value in wrapper.masked_weights()]


class PruningController:
    """Updates masks of every wrapper in a model at the steps their schedules ask for.

    Example:

    >>> controller = PruningController(pruned_model)
    >>> controller.update(step=0)  # masks now at the schedule's sparsity for step 0
    """

    def __init__(self, model):
        self.wrappers = pruning_wrappers(model)
        if not self.wrappers:
            raise ValueError(
                "The model has no pruned layers. Wrap it first: model = tfprune.prune_low_magnitude(model, ...)."
            )
        for w in self.wrappers:
            if not w.built:
                raise ValueError(f"Pruned layer '{w.name}' is not built yet: call the model on data (or build it) first.")
        self.layer_scoped = [w for w in self.wrappers if w.scope == "layer"]
        self.global_scoped = [w for w in self.wrappers if w.scope == "global"]

    @property
    def step(self):
        """The number of training steps already taken, as saved in the model."""
        return max(int(w.pruning_step.numpy()) for w in self.wrappers)

    def set_step_driven(self, driven):
        for w in self.wrappers:
            w.step_driven = driven

    def save_step(self, step):
        for w in self.wrappers:
            w.pruning_step.assign(step)

    def update(self, step):
        """Recomputes masks where a schedule says so at `step`; returns True if any changed."""
        updated = False
        for w in self.layer_scoped:
            should_update, sparsity = w.pruning_schedule(step)
            if should_update:
                weights = _current_weights(w)
                w.assign_masks(w.compute_masks(sparsity, weights), weights, step)
                updated = True
        if self.global_scoped:
            lead = self.global_scoped[0]
            should_update, sparsity = lead.pruning_schedule(step)
            if should_update:
                weights = [_current_weights(w) for w in self.global_scoped]
                scores = [np.abs(value) for values in weights for value in values]
                new_masks = iter(masks_lib.threshold_masks(scores, sparsity, lead.granularity))
                for w, values in zip(self.global_scoped, weights):
                    w.assign_masks([next(new_masks) for _ in values], values, step)
                updated = True
        return updated

    def unfinished_schedules(self, last_step):
        """Wrappers whose schedule still has updates after `last_step` (the "not sparse yet" trap)."""
        return [w for w in self.wrappers if w.pruning_schedule.end_step > last_step]
