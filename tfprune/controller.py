"""`PruningController`: the one object that changes the masks of a model, weights and channels alike.

`UpdatePruningStep` drives one during `fit`; custom training loops and drivers (the
iterative one, one-shot pruning) call it directly. It owns what is per model: the pruning
step saved in the wrappers and the *masks-changed* event that rewinding listens to. What
is per kind of unit lives in its part: `weight_pruning.WeightPruning` for `PruneLowMagnitude`
wrappers, `structured.controller.ChannelController` for `PruneChannels` wrappers. Both
allocate with `selection.allocation`, and bring JAX's train state into the variables
(`stateless.sync_variables`) before they read or write them.

Example:

>>> controller = tfprune.PruningController(pruned_model)
>>> controller.update(step=1)          # masks at the schedules' sparsity for step 1, where they update
>>> controller.prune_to(0.8, overrides={"head": 0.5})   # one-shot, now
"""

from tfprune.graph import compat
from tfprune.selection.allocation import SCOPES, WEIGHT_SCOPES, check_scope
from tfprune.stateless import sync_variables
from tfprune.structured.controller import ChannelController
from tfprune.apply.wrapper import PruneChannels
from tfprune.weight_pruning import WeightPruning
from tfprune.apply.wrapper import PruneLowMagnitude, check_built, pruning_wrappers, saved_step

_PARTS = ((PruneLowMagnitude, WeightPruning), (PruneChannels, ChannelController))
_LISTENERS = "_tfprune_masks_changed_listeners"  # held by the model itself, so they go with it


def on_masks_changed(model, listener):
    """Calls `listener(step)` whenever a controller of `model` changes its masks; returns a function that
    stops it (calling it again does nothing).

    Example:

    >>> stop = on_masks_changed(model, lambda step: print("pruned at", step))
    >>> stop()
    """
    if not hasattr(model, _LISTENERS):
        compat.set_untracked(model, _LISTENERS, [])
    listeners = getattr(model, _LISTENERS)
    listeners.append(listener)

    def stop():
        if listener in listeners:
            listeners.remove(listener)

    return stop


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
        check_built(self.wrappers)
        self.parts = [part(model, [w for w in self.wrappers if isinstance(w, kind)])
                      for kind, part in _PARTS if any(isinstance(w, kind) for w in self.wrappers)]

    @property
    def step(self):
        """The number of training steps already taken, as saved in the model (0 before the first fit)."""
        sync_variables(self.model)
        return saved_step(self.wrappers)

    def update(self, step, update_masks=True):
        """Advances to `step`: recomputes the masks whose schedules update then (unless `update_masks` is
        False) and the penalties' warm-up; returns True if masks changed."""
        changed = [part.update(step, update_masks) for part in self.parts]
        if any(changed):
            self._masks_changed(step)
        return any(changed)

    def finish_step(self, step):
        """After the batch of `step`: moves the masks of dynamic sparse training where its schedule says so (with
        that batch's gradients for RigL); returns True if masks changed."""
        changed = [part.finish_step(step) for part in self.parts]
        if any(changed):
            self._masks_changed(step)
        return any(changed)

    def prune_to(self, sparsity, overrides=None, *, scope=None, step=None):
        """Prunes the model to `sparsity` now, whatever the schedules say.

        A sparsity below the current one reopens masks; the weights they reopen restart from zero.

        Args:
            sparsity: the fraction of units to prune: of each weight (or set of coupled channels) with
                scope "layer", of all of them together with scope "global".
            overrides: `{layer name: sparsity}` for layers pruned on their own, at their own sparsity
                (for channels: the sets of channels that layer masks, such as its outputs). For weights a value may be a
                list, one sparsity per pruned weight of the layer; a key may be the wrapper itself.
            scope: "layer", "global" or (weights) "erk" instead of the scope the layers were wrapped with.
            step: the pruning step to record; default the saved one.
        """
        if scope is not None:
            channels = any(isinstance(w, PruneChannels) for w in self.wrappers)
            check_scope(scope, SCOPES if channels else WEIGHT_SCOPES)
        overrides = dict(overrides or {})
        self._check_overrides(overrides)
        step = self.step if step is None else step
        for part in self.parts:
            part.prune_to(sparsity, step=step, overrides=overrides, scope=scope)
        self._masks_changed(step)

    def reapply_masks(self):
        """Zeroes the pruned weights again, e.g. after the optimizer swapped in averaged (EMA) weights."""
        sync_variables(self.model)
        for w in self.wrappers:
            w.reapply_masks()

    def shortfalls(self, last_step):
        """Why a run ending at `last_step` leaves layers short of their final sparsity, one line per schedule."""
        return [line for part in self.parts for line in part.shortfalls(last_step)]

    def set_step_driven(self, driven):
        """Marks the wrappers as driven by a callback, so that training them does not raise, and tells the parts
        that a training run starts (`driven` True) or ends."""
        for part in self.parts:
            part.set_step_driven(driven)
        for w in self.wrappers:
            w.step_driven = driven

    def save_step(self, step):
        """Records `step` in every wrapper, so that a saved model resumes from it."""
        sync_variables(self.model)
        for w in self.wrappers:
            w.pruning_step.assign(step)

    def _check_overrides(self, overrides):
        by_name = {w.layer.name: w for w in self.wrappers}
        for key in overrides:
            wrapper = key if key in self.wrappers else by_name.get(key)
            if wrapper is None:
                raise ValueError(f"`overrides` names {key!r}, which is not a pruned layer of this model. Pruned "
                                 f"layers: {sorted(by_name)}.")
            if getattr(getattr(wrapper, "granularity", None), "m_by_n", None):
                raise ValueError(f"`overrides` gives '{wrapper.layer.name}' its own sparsity, but it is pruned N:M "
                                 "(m of every n weights, whatever the sparsity): leave it out.")

    def _masks_changed(self, step):
        for listener in list(getattr(self.model, _LISTENERS, ())):
            listener(step)
