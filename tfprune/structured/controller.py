"""Channel pruning decisions for a whole model: score each channel group, prune the lowest.

The channel part of `tfprune.PruningController`, which `UpdatePruningStep` drives.
At each update its schedule gives a sparsity s; then
- scope "layer": in every set of coupled channels, the s fraction with the lowest
  importance is pruned;
- scope "global": scores are divided by their set's mean (so that sets of different
  scale compare) and the s fraction of all channels with the lowest is pruned.
No set loses more than `max_sparsity` of its channels or its last channel, and with
`round_to` every set keeps a multiple of it (or all its channels): the counts and the
choice are `tfprune.selection.allocation.allocate`'s, as for weights. Pruned groups
score -inf, so they stay pruned.
"""

import math
import warnings

import keras
import numpy as np

from tfprune.backend_calls import host_value
from tfprune.criteria.importance import L2Norm, WeightSlice
from tfprune.layers.table import rule_by_class
from tfprune.selection.allocation import (
    allocate,
    keep_largest,
    most_prunable,
    pruned_count,
    rounded_count,
)
from tfprune.selection.budget import allocate_to_budget
from tfprune.stateless import sync_variables
from tfprune.structured.analysis import ChannelAnalysis
from tfprune.structured.channel_cost import ChannelCost
from tfprune.apply.penalties import PenaltyTerm
from tfprune.apply.wrapper import PruneChannels
from tfprune.apply.wrapper import check_built, pruning_wrappers, saved_step


def _reader():
    """`read(variable)`: its numpy value, converted once per reader."""
    values = {}

    def read(variable):
        if id(variable) not in values:
            values[id(variable)] = host_value(variable)
        return values[id(variable)]

    return read


def _scale(scores):
    """The mean of a set's finite scores (1 if not positive): global scope divides by it, so that sets of
    different scale compare."""
    finite = scores[np.isfinite(scores)]
    return finite.mean() if finite.size and finite.mean() > 0 else 1.0


def why_never_pruned(size, sparsity, scope, max_sparsity, round_to):
    """Why a set of `size` channel groups keeps all of them at `sparsity` (a schedule's final one), or None.

    Example:

    >>> why_never_pruned(4, 0.5, "layer", 0.9, round_to=8)
    'round_to=8 keeps a multiple of 8 of them, so all'
    """
    most = most_prunable(size, max_sparsity)
    asked = min(most, pruned_count(sparsity, size)) if scope == "layer" else most
    if rounded_count(size, asked, round_to):
        return None
    if size == 1:
        return "a set keeps its last channel"
    if most == 0:
        return f"max_sparsity={max_sparsity:g} allows pruning none of them"
    if asked == 0:
        return f"sparsity {sparsity:g} of them rounds to none"
    return f"round_to={round_to} keeps a multiple of {round_to} of them, so all"


class ChannelController:
    """Updates the channel masks of a model's `PruneChannels` wrappers: the channel part of `PruningController`.

    Args:
        model: the channel-pruned model.
        wrappers: its `PruneChannels` wrappers; default all of them.

    Example:

    >>> controller = ChannelController(model)
    >>> controller.prune_to(0.5, step=0)  # half of every set of coupled channels pruned now
    """

    def __init__(self, model, wrappers=None):
        self.model = model
        self.wrappers = wrappers or [w for w in pruning_wrappers(model) if isinstance(w, PruneChannels)]
        if not self.wrappers:
            raise ValueError("The model has no channel-pruned layers. Wrap it first: tfprune.prune_channels(model, ...).")
        check_built(self.wrappers)
        first = self.wrappers[0]
        for w in self.wrappers[1:]:
            if w.settings != first.settings:
                raise ValueError(
                    f"Channel-pruned layers '{w.layer.name}' and '{first.layer.name}' have different settings; "
                    "prune a model with a single tfprune.prune_channels call."
                )
        self.schedule, self.importance = first.pruning_schedule, first.importance
        self.scope, self.round_to, self.max_sparsity = first.scope, first.round_to, first.max_sparsity
        self.budget = first.budget
        self.activation_scores = None  # {id(layer): per output channel} for activation-based importance (entropy)
        self._cost = None  # the budget's ChannelCost, made on first use
        with warnings.catch_warnings():  # prune_channels has already warned about layers it keeps
            warnings.simplefilter("ignore")
            analysis = ChannelAnalysis(model, first.ignored_layers, assume_pruned=True)
        self.sets = analysis.channel_sets(analysis.removable_roots())
        self._wrapper_of = {id(w.layer): w for w in self.wrappers}
        self._axes = {id(layer): rule_by_class(layer)[0].axes(layer)
                      for s in self.sets for layer, _, _ in s.members}
        self.penalty = first.penalty
        self._penalty_step = self.step  # the step the penalty's strength was last computed from
        if self.penalty is None:
            self._penalized = []
        elif self.penalty.gated:
            self._penalized = [w for w in self.wrappers if w.gate_roles]
        else:
            self._penalized = self._attach_penalty()

    def _attach_penalty(self):
        """Gives each set's penalty to the first wrapper on it; returns the wrappers that add one."""
        for w in self.wrappers:
            w.penalty_terms = []
        for channel_set in self.sets:
            owner = next(self._wrapper_of[id(layer)] for layer, _, _ in channel_set.members
                         if id(layer) in self._wrapper_of)
            slices, sizes = [], np.zeros(channel_set.size)
            for layer, role, indices in channel_set.members:
                for axis in self._axes[id(layer)]:
                    if axis.role == role:
                        slices.append((axis.variable, axis.axis, axis.repeat, indices))
                        per_channel = math.prod(axis.variable.shape) // axis.variable.shape[axis.axis] * axis.repeat
                        sizes += indices.shape[1] * per_channel
            owner.penalty_terms.append(PenaltyTerm(slices, sizes))
        return [w for w in self.wrappers if w.penalty_terms]

    def update(self, step, update_masks=True):
        """Prunes to the schedule's sparsity if it asks for an update at `step` (and `update_masks`); returns
        True if it did.

        With a penalty, also records the step in the wrappers that add it (its strength warms up with it).
        """
        warming_up = self._penalized and self._penalty_step < self.penalty.warmup_steps  # constant strength after
        should_update, sparsity = (self.schedule.decision(step) if self.schedule is not None and update_masks
                                   else (False, None))
        if warming_up or should_update:
            sync_variables(self.model)  # once, for both writes
        if warming_up:
            for w in self._penalized:
                w.pruning_step.assign(step)
            self._penalty_step = step
        if should_update:
            self._prune(sparsity, step, {}, self.scope)
        return should_update

    @property
    def step(self):
        """The number of training steps already taken, as saved in the model (0 before the first fit)."""
        return saved_step(self.wrappers)

    def prune_to(self, sparsity, *, step, overrides=None, scope=None):
        """Prunes `sparsity` of the channels now; see `PruningController.prune_to`."""
        sync_variables(self.model)
        self._prune(sparsity, step, self._overrides_by_set(overrides or {}), scope or self.scope)

    def _overrides_by_set(self, overrides):
        """{set index: sparsity} from `{layer name or wrapper: sparsity}`: the sets whose channels a layer masks
        (a layer's outputs, a BatchNormalization's or depthwise convolution's channels)."""
        names = {(key.layer.name if isinstance(key, PruneChannels) else key): value for key, value in overrides.items()}
        by_set, used = {}, set()
        for index, channel_set in enumerate(self.sets):
            given = {layer.name: names[layer.name] for layer, role, _ in channel_set.members if layer.name in names
                     and any(axis.role == role and axis.masked for axis in self._axes[id(layer)])}
            if len(set(given.values())) > 1:
                raise ValueError(f"`overrides` gives the coupled channels of {sorted(given)} different sparsities "
                                 f"{given}; they are pruned together: give them one.")
            if given:
                by_set[index] = next(iter(given.values()))
                used.update(given)
        mine = {w.layer.name for w in self.wrappers}
        unused = sorted(name for name in names if name in mine and name not in used)
        if unused:
            raise ValueError(f"`overrides` names {unused}, whose channels are not pruned (a model output, or "
                             "ignored): their sparsity cannot be set. Leave them out.")
        return by_set

    def prune_to_budget(self, *, step, progress=1.0):
        """Prunes now so that the model costs `progress` of the way from dense to the budget (1: the budget)."""
        if self.budget is None:
            raise ValueError("This model was pruned without a budget: use prune_to(sparsity), or prune it with "
                             "tfprune.prune_channels(..., budget=...) or tfprune.prune_to_budget.")
        sync_variables(self.model)
        self._prune_to_cost(progress, step)

    def _prune_to_cost(self, progress, step):
        if self._cost is None:
            self._cost = ChannelCost.for_budget(self.budget, self.model, self.sets)
        read, recorded = _reader(), self._recorded_gradients()
        scores = [self._scores(s, read, recorded) for s in self.sets]
        target = self._cost.dense - progress * (self._cost.dense - self.budget.target(self._cost.dense))
        keep = allocate_to_budget(scores, self._cost, target, self.max_sparsity, self.round_to, what=repr(self.budget))
        self._apply([np.flatnonzero(~k) for k in keep], step)

    def _prune(self, sparsity, step, by_set, scope):
        if self.budget is not None:
            if by_set:
                raise ValueError("`overrides` set sparsities per layer, which a budget chooses: give one or the other.")
            final = self.schedule.final_sparsity if self.schedule is not None else 1.0
            self._prune_to_cost(min(1.0, float(sparsity) / final), step)
            return
        recorded = self._recorded_gradients()
        read = _reader()
        scores = [self._scores(s, read, recorded) for s in self.sets]
        if scope == "global":
            scores = [None if s is None else s / _scale(s) for s in scores]
        keep = allocate(scores, float(sparsity), scope, self.max_sparsity, self.round_to, by_set)
        self._apply([np.flatnonzero(~k) for k in keep], step)

    def prune_below(self, threshold):
        """Prunes every group whose L2 norm (over all its coupled weights) is below `threshold`.

        Every set keeps at least its largest group. Returns the number of groups pruned.
        """
        chosen, read = [], _reader()
        for channel_set in self.sets:
            norms = self._scores(channel_set, read, {}, L2Norm())
            below = np.flatnonzero(norms < threshold)
            chosen.append(below if len(below) < channel_set.size else np.argsort(norms)[:-1])
        self._apply(chosen, self.step)
        return sum(len(c) for c in chosen)

    def fold_gates(self):
        """Folds every L0 gate into its weights and prunes the groups whose gate is closed; returns their count.

        Groups pruned before stay pruned.
        """
        gates = {id(w.layer): w.fold_gates() for w in self.wrappers if w.active_gates is not None}
        if not gates:
            raise ValueError("The model has no L0 gates to fold: prune it with penalty=tfprune.L0Gates(...) first, "
                             "or its gates are folded already.")
        if isinstance(self.model, keras.Model):  # compiled functions still apply the gates: trace them again
            self.model.train_function = self.model.test_function = self.model.predict_function = None
        chosen = []
        for channel_set in self.sets:
            closed = self._already_pruned(channel_set)
            for layer, role, indices in channel_set.members:
                if role in gates.get(id(layer), {}):
                    closed |= gates[id(layer)][role][indices[:, 0]] == 0
            chosen.append(np.flatnonzero(closed))
        self._apply(chosen, self.step)
        return sum(len(c) for c in chosen)

    def _apply(self, chosen, step):
        """Masks the groups `chosen[i]` (indices into set i) and nothing else."""
        masks = {id(w): {role: np.ones(mask.shape[0], bool) for role, mask in w.channel_masks.items()}
                 for w in self.wrappers}
        for channel_set, picked in zip(self.sets, chosen):
            if len(picked):
                for layer, role, indices in channel_set.members:
                    wrapper = self._wrapper_of.get(id(layer))
                    if wrapper is not None and role in masks[id(wrapper)]:
                        masks[id(wrapper)][role][indices[picked].reshape(-1)] = False
        for w in self.wrappers:
            w.apply_masks(list(masks[id(w)].values()), step)  # in the order of w.masks
            if w.taylor is not None:
                w.taylor.reset()

    def _recorded_gradients(self):
        """{id(layer): per output channel, the mean squared gate gradient (gradient-based importance) or the
        entropy of its outputs (`activation_scores`, set by `prune_to_budget`)}."""
        if self.importance.needs_activations:
            if self.activation_scores is None:
                raise ValueError(f"{type(self.importance).__name__} scores channels by their outputs over data, in one "
                                 "shot: tfprune.prune_to_budget(model, budget, importance='entropy', data=x).")
            return self.activation_scores
        if not self.importance.needs_gradients:
            return {}
        recorded = {id(w.layer): w.taylor.mean() for w in self.wrappers if w.taylor is not None}
        if not any(value is not None for value in recorded.values()):
            raise ValueError(
                f"{type(self.importance).__name__} importance has not seen a training batch yet: it scores channels "
                "by gradients recorded during fit. Let the schedule begin after some steps (begin_step >= 1, e.g. "
                "one epoch) instead of pruning at step 0."
            )
        return recorded

    def _scores(self, channel_set, read, recorded, importance=None):
        """Importance per group, -inf for groups already pruned; None if the criterion skips the set.

        `read(variable)` gives its value, read once per update although a weight may serve several sets.
        """
        slices = []
        for layer, role, indices in channel_set.members:
            for axis in self._axes[id(layer)]:
                if axis.role == role:
                    values = np.moveaxis(read(axis.variable), axis.axis, 0)
                    values = values.reshape(axis.size, -1)  # a channel's `repeat` entries side by side
                    slices.append(WeightSlice(layer, role, axis.variable.name,
                                              values[indices].reshape(len(indices), -1)))
            if role == "output" and recorded.get(id(layer)) is not None:
                name = "entropy" if self.importance.needs_activations else "taylor"
                slices.append(WeightSlice(layer, role, name, recorded[id(layer)][indices]))
        scores = (importance or self.importance)(slices)
        if scores is None:
            return None
        scores = np.asarray(scores, dtype=np.float64).copy()
        scores[self._already_pruned(channel_set)] = -np.inf
        return scores

    def keep_counts(self, counts, *, step):
        """Prunes each set to `counts[i]` groups now, keeping its most important ones."""
        sync_variables(self.model)
        read, recorded = _reader(), self._recorded_gradients()
        chosen = []
        for channel_set, count in zip(self.sets, counts):
            scores = self._scores(channel_set, read, recorded)
            keep = np.ones(channel_set.size, bool) if scores is None else keep_largest(scores, channel_set.size - count)
            chosen.append(np.flatnonzero(~keep))
        self._apply(chosen, step)

    def kept_groups(self):
        """How many groups each set keeps now (in `self.sets` order)."""
        return np.array([s.size - int(self._already_pruned(s).sum()) for s in self.sets])

    def _already_pruned(self, channel_set):
        for layer, role, indices in channel_set.members:
            wrapper = self._wrapper_of.get(id(layer))
            if wrapper is not None and role in wrapper.channel_masks:
                return wrapper.pruned(role)[indices[:, 0]]
        return np.zeros(channel_set.size, bool)

    def set_step_driven(self, driven):
        """Nothing to start or stop with a training run: Taylor scores are recorded by the wrappers themselves."""

    def finish_step(self, step):
        """Nothing moves after a batch: channel masks change at the start of a step (`update`)."""
        return False

    def shortfalls(self, last_step):
        """Why a run ending at `last_step` stops short of the final sparsity (one line), or nothing."""
        line = self.schedule and self.schedule.shortfall([w.layer.name for w in self.wrappers], last_step)
        return [line] if line else []
