"""`PruningController`: the one object that changes the masks of a model, weights and channels alike.

`UpdatePruningStep` drives one during `fit`; custom training loops and drivers (the
iterative one, one-shot pruning) call it directly. It owns what is per model: the pruning
step saved in the wrappers, bringing JAX's train state into the variables before masks are
read or written, and the *masks-changed* event that rewinding listens to. What is per kind
of unit lives in its part: `weight_pruning.WeightPruning` for `PruneLowMagnitude` wrappers,
`structured.controller.ChannelController` for `PruneChannels` wrappers.

Example:

>>> controller = tfprune.PruningController(pruned_model)
>>> controller.update(step=1)          # masks at the schedules' sparsity for step 1, where they update
>>> controller.prune_to(0.8, overrides={"head": 0.5})   # one-shot, now
"""

import weakref

from tfprune.stateless import sync_variables
from tfprune.structured.controller import ChannelController
from tfprune.structured.wrapper import PruneChannels
from tfprune.weight_pruning import WeightPruning
from tfprune.wrapper import PruneLowMagnitude, pruning_wrappers, saved_step

_PARTS = ((PruneLowMagnitude, WeightPruning), (PruneChannels, ChannelController))
_LISTENERS = weakref.WeakKeyDictionary()  # model -> [listener(step)] told when its masks change


def on_masks_changed(model, listener):
    """Calls `listener(step)` whenever a controller of `model` changes its masks; returns a function that
    stops it.

    Example:

    >>> stop = on_masks_changed(model, lambda step: print("pruned at", step))
    >>> stop()
    """
    listeners = _LISTENERS.setdefault(model, [])
    listeners.append(listener)
    return lambda: listeners.remove(listener)


class PruningController:
    """Updates the masks of every pruned layer of `model` at the steps their schedules ask for.

    Args:
        model: a model with tfprune wrappers (or one wrapper), built.
    """

    def __init__(self, model):
        self.model = model
        self.wrappers = pruning_wrappers(model)
        if not self.wrappers:
            raise ValueError("The model has no pruned layers. Wrap it first: tfprune.prune_low_magnitude(model, ...) "
                             "or tfprune.prune_channels(model, ...).")
        for w in self.wrappers:
            if not w.built:
                raise ValueError(f"Pruned layer '{w.name}' is not built yet: call the model on data (or build it) first.")
        self.parts = [part(model, [w for w in self.wrappers if isinstance(w, kind)])
                      for kind, part in _PARTS if any(isinstance(w, kind) for w in self.wrappers)]

    @property
    def step(self):
        """The number of training steps already taken, as saved in the model (0 before the first fit)."""
        return saved_step(self.wrappers)

    def update(self, step):
        """Recomputes the masks whose schedules update at `step`; returns True if any changed."""
        changed = [part.update(step) for part in self.parts]
        if any(changed):
            self._masks_changed(step)
        return any(changed)

    def prune_to(self, sparsity, overrides=None, scope=None, step=None):
        """Prunes every pruned layer to `sparsity` now, whatever the schedules say.

        Args:
            sparsity: the fraction of each layer's units (weights, or channels of a set) to prune.
            overrides: `{layer name: sparsity}` for layers pruned on their own, at their own sparsity
                (for channels: the sets that layer's outputs belong to).
            scope: "layer" or "global" instead of the scope the layers were wrapped with.
            step: the pruning step to record; default the saved one.
        """
        step = self.step if step is None else step
        for part in self.parts:
            part.prune_to(sparsity, step, overrides, scope)
        self._masks_changed(step)

    def reapply_masks(self):
        """Zeroes the pruned weights again, e.g. after the optimizer swapped in averaged (EMA) weights."""
        sync_variables(self.model)
        for part in self.parts:
            part.reapply_masks()

    def shortfalls(self, last_step):
        """Why a run ending at `last_step` leaves layers short of their final sparsity, one line per schedule."""
        return [line for part in self.parts for line in part.shortfalls(last_step)]

    def set_step_driven(self, driven):
        """Marks the wrappers as driven by a callback, so that training them does not raise."""
        for w in self.wrappers:
            w.step_driven = driven

    def save_step(self, step):
        """Records `step` in every wrapper, so that a saved model resumes from it."""
        sync_variables(self.model)
        for w in self.wrappers:
            w.pruning_step.assign(step)

    def _masks_changed(self, step):
        for listener in list(_LISTENERS.get(self.model, ())):
            listener(step)
