"""Model-level mask updates: one view of every pruned layer, for layer and global scope.

Global pruning ranks the weights of all layers together, so the schedule and the
mask update live here rather than in each wrapper. `UpdatePruningStep` drives a
controller; custom training loops can drive one directly.
"""

import keras
import numpy as np
from keras import ops

from tfprune import masks as masks_lib
from tfprune.wrapper import PruneLowMagnitude


def pruning_wrappers(model):
    """All `PruneLowMagnitude` layers inside `model` (nested models included)."""
    if isinstance(model, PruneLowMagnitude):
        return [model]
    return [layer for layer in model._flatten_layers(include_self=False) if isinstance(layer, PruneLowMagnitude)]


def _one_graph_call(fn):
    """`fn` traced into a single TensorFlow graph on the TensorFlow backend; unchanged on others.

    A mask update assigns a few variables per layer. Run eagerly, each op costs a Python
    round trip, which dominates the update of small models.
    """
    if keras.backend.backend() != "tensorflow":
        return fn
    import tensorflow as tf

    return tf.function(fn, autograph=False)


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
        self.global_scoped = tuple(w for w in self.wrappers if w.scope == "global")
        self._compiled = {}

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
        due = []
        for w in self.layer_scoped:
            should_update, sparsity = w.pruning_schedule(step)
            if should_update:
                due.append((w, sparsity))
        global_sparsity = None
        if self.global_scoped:
            should_update, sparsity = self.global_scoped[0].pruning_schedule(step)
            if should_update:
                global_sparsity = sparsity
        if not due and global_sparsity is None:
            return False
        targets = tuple(w for w, _ in due) + (self.global_scoped if global_sparsity is not None else ())
        # Pruned entries are already zero in the weights (see wrapper.KeepPruned): scores need no mask.
        values = [[v.numpy() for v in w.pruned_weights] for w in targets]
        new_masks = [w.compute_masks(sparsity, v) for (w, sparsity), v in zip(due, values)]
        if global_sparsity is not None:
            global_values = values[len(due):]
            scores = [np.abs(v) for layer_values in global_values for v in layer_values]
            flat = iter(masks_lib.threshold_masks(scores, global_sparsity, self.global_scoped[0].granularity))
            new_masks += [[next(flat) for _ in layer_values] for layer_values in global_values]
        # Tensors, not NumPy arrays: a compiled call converts NumPy arguments far more slowly.
        new_masks = [[ops.convert_to_tensor(m) for m in masks] for masks in new_masks]
        self._apply_call(targets)(new_masks, ops.convert_to_tensor(step, dtype="int64"))
        return True

    def _apply_call(self, targets):
        """One compiled call that applies new masks to a set of wrappers updated together."""
        if targets not in self._compiled:

            def apply(new_masks, step):
                for w, masks in zip(targets, new_masks):
                    w.apply_masks(masks, step)

            self._compiled[targets] = _one_graph_call(apply)
        return self._compiled[targets]

    def unfinished_schedules(self, last_step):
        """Wrappers whose schedule still has updates after `last_step` (the "not sparse yet" trap)."""
        return [w for w in self.wrappers if w.pruning_schedule.end_step > last_step]
