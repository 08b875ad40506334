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

import keras
import numpy as np

from tfprune.apply.wrapper import pruning_wrappers
from tfprune.layers.table import rule_by_class
from tfprune.structured.cost import call_flops, traced_calls


class ChannelCost:
    """A model's cost as a function of the groups each channel set keeps.

    Args:
        items: `(cost, roles)` pairs: the role keys an item depends on, and its cost: a number (the
            dense cost, which scales with the kept fraction of each role) or a function of the kept
            channels of each role (a latency table's).
        owners: {role key: (channels of the role, [(set index, channels per group)])}.
        total_cost: the dense model's whole cost (items and the rest).
        sizes: groups per set.
    """

    def __init__(self, items, owners, total_cost, sizes):
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.dense = float(total_cost)
        self.role_owners = owners
        self._items = [(cost if callable(cost) else _Scaled(cost, [owners[r][0] for r in roles]), tuple(roles))
                       for cost, roles in items]
        self._rest = self.dense - sum(self._item_cost(i, self.sizes) for i in range(len(self._items)))
        self._items_of_set = [[] for _ in self.sizes]  # item indices each set touches
        for index, (_, roles) in enumerate(self._items):
            for s in sorted({s for role in roles for s, _ in owners[role][1]}):
                self._items_of_set[s].append(index)

    @classmethod
    def flops(cls, model, sets):
        """FLOPs (as `tfprune.model_cost` counts them) of `model` with its channel `sets` pruned."""
        owners = role_owners(sets)
        items = []
        for call in traced_calls(model):
            items.append((call_flops(call), _kernel_roles(call.layer, owners)))
        return cls(items, owners, sum(cost for cost, _ in items), [s.size for s in sets])

    @classmethod
    def params(cls, model, sets):
        """Parameters of `model` with its channel `sets` pruned."""
        owners = role_owners(sets)
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
    def latency(cls, model, sets, table):
        """The latency (in `table.unit`) of `model` with its channel `sets` pruned, from a `LatencyTable`."""
        table.check_model(model)
        owners = role_owners(sets)
        calls = traced_calls(model)
        items, elements = [], []
        for call in calls:
            layer, name = call.layer, call.layer.name
            owned = sorted(role for layer_id, role in owners if layer_id == id(layer))
            entry = table.layers.get(name, {"roles": []})
            missing = sorted(set(owned) - set(entry["roles"]))
            if missing:
                raise ValueError(f"The latency table has no {missing} channels of layer '{name}', which this pruning "
                                 "may remove (was it measured with other ignored_layers?): measure it with the same "
                                 "settings.")
            if owned:
                items.append((_TableCost(table, name, owned), [(id(layer), role) for role in owned]))
            role = _output_role(layer, owned)
            elements.append((math.prod(call.output.shape[1:]), [(id(layer), role)] if role else []))
        # The rest (additions, padding, pooling: element-wise work) follows the activations' sizes.
        items += [(table.rest_per_element * count, roles) for count, roles in elements]
        return cls(items, owners, table.predict(model), [s.size for s in sets])  # dense or narrower than measured

    @classmethod
    def for_budget(cls, budget, model, sets):
        """The cost a `Budget` counts: FLOPs, parameters or latency."""
        if budget.kind == "latency":
            return cls.latency(model, sets, budget.table)
        return {"FLOPs": cls.flops, "parameters": cls.params}[budget.kind](model, sets)

    @property
    def neighbours(self):
        """For each set, the sets whose cost items it shares (itself included)."""
        touching = [set() for _ in self.sizes]
        for s, indices in enumerate(self._items_of_set):
            for index in indices:
                touching[s].update(o for role in self._items[index][1] for o, _ in self.role_owners[role][1])
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
        return cost([self.channels(role, kept) for role in roles])

    def channels(self, role, kept):
        """The channels a role keeps when set i keeps `kept[i]` of its groups."""
        channels, owned = self.role_owners[role]
        return channels - sum((self.sizes[s] - kept[s]) * width for s, width in owned)


class _TableCost:
    """A layer's cost from a latency table, given the kept channels of its `owned` roles (the others whole)."""

    def __init__(self, table, name, owned):
        entry = table.layers[name]
        self.table, self.name, self.full = table, name, dict(zip(entry["roles"], entry["channels"]))
        self.owned = owned

    @property
    def dense(self):
        return self([self.full[role] for role in self.owned])

    def __call__(self, kept):
        channels = {**self.full, **dict(zip(self.owned, kept))}
        roles = self.table.layers[self.name]["roles"]
        return self.table.layer_cost(self.name, [channels[role] for role in roles])


def _output_role(layer, owned):
    """The owned role along a layer's output channels: "output", or a depthwise convolution's "input"."""
    if "output" in owned:
        return "output"
    return "input" if "input" in owned and isinstance(layer, keras.layers.DepthwiseConv2D) else None


class _Scaled:
    """A cost proportional to the kept fraction of each of its roles' channels."""

    def __init__(self, dense, channels):
        self.dense, self.channels = float(dense), channels

    def __call__(self, kept):
        return self.dense * math.prod(k / c for k, c in zip(kept, self.channels))


def role_owners(sets):
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
