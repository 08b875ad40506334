"""Channel pruning decisions for a whole model: score each channel group, prune the lowest.

`UpdatePruningStep` drives a `ChannelController` as it drives the magnitude one.
At each update its schedule gives a sparsity s; then
- scope "layer": in every set of coupled channels, the s fraction with the lowest
  importance is pruned;
- scope "global": scores are divided by their set's mean (so that sets of different
  scale compare) and the s fraction of all channels with the lowest is pruned.
No set loses more than `max_sparsity` of its channels or its last channel, and with
`round_to` every set keeps a multiple of it (or all its channels). Pruned groups
stay pruned.
"""

import math
import warnings

import keras
import numpy as np

from tfprune.controller import StepKeeping, _shortfall_line, pruning_wrappers
from tfprune.structured.analysis import ChannelAnalysis
from tfprune.structured.importance import WeightSlice
from tfprune.structured.rules import rule_by_class
from tfprune.structured.wrapper import PruneChannels


class ChannelController(StepKeeping):
    """Updates the channel masks of every `PruneChannels` wrapper of a model.

    Example:

    >>> controller = ChannelController(model)
    >>> controller.prune(0.5, step=0)  # half of every set of coupled channels pruned now
    """

    def __init__(self, model):
        self.wrappers = [w for w in pruning_wrappers(model) if isinstance(w, PruneChannels)]
        if not self.wrappers:
            raise ValueError("The model has no channel-pruned layers. Wrap it first: tfprune.prune_channels(model, ...).")
        for w in self.wrappers:
            if not w.built:
                raise ValueError(f"Pruned layer '{w.name}' is not built yet: call the model on data (or build it) first.")
        first = self.wrappers[0]
        for w in self.wrappers[1:]:
            if w.settings != first.settings:
                raise ValueError(
                    f"Channel-pruned layers '{w.layer.name}' and '{first.layer.name}' have different settings; "
                    "prune a model with a single tfprune.prune_channels call."
                )
        self.schedule, self.importance = first.pruning_schedule, first.importance
        self.scope, self.round_to, self.max_sparsity = first.scope, first.round_to, first.max_sparsity
        with warnings.catch_warnings():  # prune_channels has already warned about layers it keeps
            warnings.simplefilter("ignore")
            analysis = ChannelAnalysis(model, first.ignored_layers, assume_pruned=True)
        self.sets = analysis.channel_sets(analysis.removable_roots())
        self._wrapper_of = {id(w.layer): w for w in self.wrappers}
        self._axes = {id(layer): rule_by_class(layer)[0].axes(layer)
                      for s in self.sets for layer, _, _ in s.members}

    def update(self, step):
        """Prunes to the schedule's sparsity if it asks for an update at `step`; returns True if it did."""
        should_update, sparsity = self.schedule(step)
        if should_update:
            self.prune(sparsity, step)
        return bool(should_update)

    def prune(self, sparsity, step):
        """Prunes the groups of lowest importance, so that `sparsity` of the channels are pruned."""
        scores = [self._scores(s) for s in self.sets]
        counts = self._counts(scores, float(sparsity))
        masks = {id(w): {role: np.ones(mask.shape[0], bool) for role, mask in w.channel_masks.items()}
                 for w in self.wrappers}
        for channel_set, set_scores, count in zip(self.sets, scores, counts):
            if count:
                chosen = np.argsort(set_scores, kind="stable")[:count]
                for layer, role, indices in channel_set.members:
                    wrapper = self._wrapper_of.get(id(layer))
                    if wrapper is not None and role in masks[id(wrapper)]:
                        masks[id(wrapper)][role][indices[chosen].reshape(-1)] = False
        for w in self.wrappers:
            w.apply_masks(masks[id(w)], step)

    def _scores(self, channel_set):
        """Importance per group, -inf for groups already pruned; None if the criterion skips the set."""
        slices = []
        for layer, role, indices in channel_set.members:
            for axis in self._axes[id(layer)]:
                if axis.role == role:
                    values = np.moveaxis(keras.ops.convert_to_numpy(axis.variable), axis.axis, 0)
                    values = values.reshape(axis.size, -1)  # a channel's `repeat` entries side by side
                    slices.append(WeightSlice(layer, role, axis.variable.name,
                                              values[indices].reshape(len(indices), -1)))
        scores = self.importance(slices)
        if scores is None:
            return None
        scores = np.asarray(scores, dtype=np.float64).copy()
        scores[self._already_pruned(channel_set)] = -np.inf
        return scores

    def _already_pruned(self, channel_set):
        for layer, role, indices in channel_set.members:
            wrapper = self._wrapper_of.get(id(layer))
            if wrapper is not None and role in wrapper.channel_masks:
                return wrapper.pruned(role)[indices[:, 0]]
        return np.zeros(channel_set.size, bool)

    def _counts(self, scores, sparsity):
        """How many groups to prune in each set."""
        caps = [0 if s is None else min(c.size - 1, math.floor(self.max_sparsity * c.size + 1e-9))
                for c, s in zip(self.sets, scores)]
        if self.scope == "layer":
            counts = [min(cap, math.floor(sparsity * c.size + 1e-9)) for c, cap in zip(self.sets, caps)]
        else:
            counts = self._global_counts(scores, caps, sparsity)
        return [self._rounded(c.size, count) for c, count in zip(self.sets, counts)]

    def _global_counts(self, scores, caps, sparsity):
        normalized = []
        for index, set_scores in enumerate(scores):
            if set_scores is None:
                continue
            finite = set_scores[np.isfinite(set_scores)]
            scale = finite.mean() if finite.size and finite.mean() > 0 else 1.0
            normalized += [(score / scale, index) for score in set_scores]
        total = math.floor(sparsity * len(normalized) + 1e-9)
        counts = [0] * len(self.sets)
        for _, index in sorted(normalized, key=lambda pair: pair[0]):
            if total == 0:
                break
            if counts[index] < caps[index]:
                counts[index] += 1
                total -= 1
        return counts

    def _rounded(self, size, count):
        """`count` lowered so that the channels kept are a multiple of `round_to` (or all of them)."""
        if not self.round_to or count == 0:
            return count
        keep = min(size, math.ceil((size - count) / self.round_to) * self.round_to)
        return size - keep

    def reapply_masks(self):
        """Zeroes the pruned channels again, e.g. after the optimizer swapped in averaged (EMA) weights."""
        for w in self.wrappers:
            w.apply_masks({role: ~w.pruned(role) for role in w.channel_masks}, w.pruning_step.value)

    def shortfalls(self, last_step):
        """Why a run ending at `last_step` stops short of the final sparsity (one line), or nothing."""
        updates = self.schedule.updates_until(last_step)
        reached = self.schedule.sparsity_at(updates[-1]) if updates else 0.0
        if reached >= self.schedule.final_sparsity - 1e-9:
            return []
        return [_shortfall_line(self.schedule, updates, [w.layer.name for w in self.wrappers], last_step)]
