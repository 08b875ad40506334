"""What a channel-pruned model costs, from how many channel groups each set keeps, without building it.

A model's cost is a constant plus a sum of *items*: a counted layer's FLOPs, a weight's
parameters. Each item scales with the kept fraction of every channel role along its
axes: a Conv2D kernel's parameters and FLOPs with its input and output channels, a
depthwise kernel's with its channels. A role's kept channels follow from the sets that
own them (`ChannelSet` members: a concatenation's input is owned by several), so the
cost of any configuration is a few products, and the change from pruning one set
touches only the items on its layers. `allocate_to_budget` searches on this.

Example:

```python
cost = ChannelCost.flops(model, sets)
cost.total(cost.sizes)                     # the dense model's FLOPs (as `model_cost`)
cost.total(cost.sizes // 2)                # every set at half its groups
```
"""

import math

import numpy as np

from tfprune.apply.wrapper import pruning_wrappers
from tfprune.layers.table import rule_by_class
from tfprune.structured.cost import _call_flops, _traced_calls


class ChannelCost:
    """A model's cost as a function of the groups each channel set keeps.

    Args:
        items: `(cost, roles)` pairs: the item's dense cost and the role keys it scales with.
        owners: {role key: (channels of the role, [(set index, channels per group)])}.
        total_cost: the dense model's whole cost (items and the rest).
        sizes: groups per set.
    """

    def __init__(self, items, owners, total_cost, sizes):
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.dense = float(total_cost)
        self._items = [(float(cost), tuple(roles)) for cost, roles in items]
        self._owners = owners
        self._rest = self.dense - sum(cost for cost, _ in self._items)
        self._items_of_set = [[] for _ in self.sizes]  # item indices each set touches
        for index, (_, roles) in enumerate(self._items):
            for s in sorted({s for role in roles for s, _ in owners[role][1]}):
                self._items_of_set[s].append(index)

    @classmethod
    def flops(cls, model, sets):
        """FLOPs (as `tfprune.model_cost` counts them) of `model` with its channel `sets` pruned."""
        owners = _owners(sets)
        items = []
        for call in _traced_calls(model):
            items.append((_call_flops(call), _kernel_roles(call.layer, owners)))
        return cls(items, owners, sum(cost for cost, _ in items), [s.size for s in sets])

    @classmethod
    def params(cls, model, sets):
        """Parameters of `model` with its channel `sets` pruned."""
        owners = _owners(sets)
        items, seen = [], set()
        for channel_set in sets:
            for layer, _, _ in channel_set.members:
                for variable, roles in _variable_roles(layer, owners, every_weight=True):
                    if id(variable) not in seen:
                        seen.add(id(variable))
                        items.append((math.prod(variable.shape), roles))
        wrapping = sum(w.count_params() - w.layer.count_params() for w in pruning_wrappers(model))  # masks, steps
        return cls(items, owners, model.count_params() - wrapping, [s.size for s in sets])

    @classmethod
    def for_budget(cls, budget, model, sets):
        """The cost a `Budget` counts: FLOPs or parameters."""
        return {"FLOPs": cls.flops, "parameters": cls.params}[budget.kind](model, sets)

    @property
    def neighbours(self):
        """For each set, the sets whose cost items it shares (itself included)."""
        touching = [set() for _ in self.sizes]
        for s, indices in enumerate(self._items_of_set):
            for index in indices:
                touching[s].update(o for role in self._items[index][1] for o, _ in self._owners[role][1])
        return [sorted(t) for t in touching]

    def total(self, kept):
        """The model's cost when set i keeps `kept[i]` of its groups."""
        return self._rest + sum(self._item_cost(index, kept) for index in range(len(self._items)))

    def saving(self, kept, s, fewer):
        """How much cheaper the model gets when set `s` keeps `fewer` groups instead of `kept[s]`."""
        changed = kept.copy()
        changed[s] = fewer
        return sum(self._item_cost(i, kept) - self._item_cost(i, changed) for i in self._items_of_set[s])

    def _item_cost(self, index, kept):
        cost, roles = self._items[index]
        for role in roles:
            channels, owned = self._owners[role]
            pruned = sum((self.sizes[s] - kept[s]) * width for s, width in owned)
            cost *= (channels - pruned) / channels
        return cost


def _owners(sets):
    """{(id(layer), role): (channels of the role, [(set index, channels per group)])} for the roles along weights
    (a role without one, such as a Multiply's, costs nothing here)."""
    owners = {}
    for s, channel_set in enumerate(sets):
        for layer, role, indices in channel_set.members:
            key = (id(layer), role)
            if key not in owners:
                size = next((axis.size for axis in rule_by_class(layer)[0].axes(layer) if axis.role == role), None)
                if size is None:
                    continue
                owners[key] = (size, [])
            owners[key][1].append((s, indices.shape[1]))
    return owners


def _variable_roles(layer, owners, every_weight=False):
    """[(variable, the owned roles along its axes)] for the layer's weights with channel axes; with
    `every_weight`, also its other weights (moving statistics), each with the owned roles whose channel
    count one of its dimensions has."""
    found = {}
    for axis in rule_by_class(layer)[0].axes(layer):
        _, roles = found.setdefault(id(axis.variable), (axis.variable, []))
        if (id(layer), axis.role) in owners and (id(layer), axis.role) not in roles:
            roles.append((id(layer), axis.role))
    if every_weight:
        sizes = {owners[key][0]: key for key in owners if key[0] == id(layer)}
        for variable in layer.weights:
            if id(variable) not in found:
                found[id(variable)] = (variable, list(dict.fromkeys(sizes[d] for d in variable.shape if d in sizes)))
    return list(found.values())


def _kernel_roles(layer, owners):
    """The owned roles a layer's FLOPs scale with: those along its largest weight (its kernel)."""
    variables = _variable_roles(layer, owners) if any(key[0] == id(layer) for key in owners) else []
    if not variables:
        return ()
    _, roles = max(variables, key=lambda pair: math.prod(pair[0].shape))
    return tuple(roles)
