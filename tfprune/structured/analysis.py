"""The channel analysis of a Sequential or Functional model: which channels are tied, which are zero.

The walk visits the model's nodes in order, as Keras' own `Functional` does when
it runs, and lets each layer's `Rule` move channel labels from inputs to
outputs. Model inputs and outputs are frozen: their channels are never removed.
A nested model is analysed on its own, with its inputs and outputs frozen.
"""

import dataclasses
import warnings

import keras
import numpy as np

from tfprune.backend_calls import host_value
from tfprune.graph import compat
from tfprune.graph.containers import is_graph_model
from tfprune.graph.traverse import layers_in
from tfprune.layers.table import rule_for
from tfprune.messages import first_names
from tfprune.structured.labels import Channels, LabelSets
from tfprune.structured.rules import Boundary, channel_count, weights_by_name
from tfprune.apply.wrapper import PruneChannels


@dataclasses.dataclass(frozen=True)
class ChannelGroup:
    """Channels that can only be removed together: one index seen from every weight that touches it.

    Attributes:
        members: tuple of `(layer, role, indices)`: the layer's `role` axis
            ("input", "output", "channel", "heads", or "query"/"key"/"value" of an
            attention layer) at `indices` belongs to this group.
        zero: True if the channel is exactly zero wherever it enters a weight, so
            that `shrink` can remove it without changing the model's outputs (or,
            for `shrink`, a constant that the consuming layer's bias takes).
    """

    members: tuple
    zero: bool

    @property
    def layers(self):
        """Names of the layers this group touches, in model order."""
        return list(dict.fromkeys(layer.name for layer, _, _ in self.members))

    def __repr__(self):
        parts = ", ".join(f"{layer.name}.{role}{list(indices)}" for layer, role, indices in self.members)
        return f"ChannelGroup({parts}, zero={self.zero})"


class ChannelAnalysis:
    """The result of walking a model: labels per layer role, and where channels enter weights.

    With `assume_pruned=True` every weight that channel pruning masks is taken as zero: a
    group then counts as zero exactly when masking it makes it vanish, which tells which
    groups channel pruning may take (a channel through a sigmoid, which maps 0 to 0.5, never
    vanishes). `PruneChannels` wrappers are seen through.

    With `fold_constants=True` (`shrink`) a group also counts as zero where it enters a Dense or Conv that can
    take it into its bias (`Producer`'s `folds`) holding one constant, the same in every call (`constants`).
    """

    def __init__(self, model, ignored_layers=(), assume_pruned=False, fold_constants=False):
        if not is_graph_model(model):
            raise ValueError(
                f"Structured pruning needs a Functional or Sequential model; '{model.name}' is a subclassed "
                f"{type(model).__name__}, whose call() tfprune cannot see through. Build the same network "
                "with the Functional API (keras.Input -> layers -> keras.Model) and prune that."
            )
        self.sets = LabelSets()
        self.roles = {}  # layer -> {role: labels}
        self.kept = []  # (layer, reason, expected): layers whose channels are kept
        self._sinks = []
        self.ignored_names = _names_of(ignored_layers, model)
        self._ignored = set(self.ignored_names)
        self._tensors = {}
        self._seen_models = set()
        self._assume_pruned = assume_pruned
        self._assumed_zero = set()  # ids of masked variables, with assume_pruned
        self._passages = []  # (operation, rule, input Channels, output Channels) per node visited
        self._fold_constants = fold_constants
        self._folded = {}  # layer -> value of each input channel in all its calls (NaN: not one constant)
        self._walk_model(model)
        unexpected = {}
        for layer, reason, expected in self.kept:
            if not expected:
                unexpected.setdefault(f"{type(layer).__name__}: {reason}", []).append(repr(layer.name))
        if unexpected:
            warnings.warn(
                f"Channel analysis keeps the channels around {sum(map(len, unexpected.values()))} layer(s) it does "
                "not understand, and their neighbours' channels are not pruned: "
                + "; ".join(f"{first_names(names)} ({kind})" for kind, names in unexpected.items())
                + ". List them in ignored_layers to keep them without this warning.",
                stacklevel=3,
            )

    # -- the walk --------------------------------------------------------------------------------
    def _walk_model(self, model):
        self._seen_models.add(id(model))
        graph = compat.functional_graph(model)
        if graph is None or not model.built:
            raise ValueError(
                f"Model '{model.name}' is not built: give it an input shape (keras.Input) or call it on data first."
            )
        for tensor in graph.inputs:
            self._tensors[id(tensor)] = self.frozen(channel_count(tensor))
        by_depth = compat.nodes_by_depth(graph)
        for depth in sorted(by_depth, reverse=True):
            for node in by_depth[depth]:
                if node.is_input or not node.operation:
                    continue
                if any(id(t) not in self._tensors for t in node.input_tensors):
                    continue  # a node of another model sharing this layer
                inputs = [self._tensors[id(t)] for t in node.input_tensors]
                for tensor, channels in zip(node.output_tensors, self._visit(node, inputs)):
                    self._tensors[id(tensor)] = channels
        for tensor in graph.outputs:
            self.freeze(self._tensors[id(tensor)])

    def _visit(self, node, inputs):
        operation = node.operation
        if is_graph_model(operation):
            if id(operation) not in self._seen_models:
                self._walk_model(operation)
            return Boundary().propagate(self, operation, node, inputs)
        if isinstance(operation, PruneChannels):
            operation = operation.layer
        if operation.name in self._ignored:
            rule, reason, expected = Boundary(), "it is in ignored_layers", True
        else:
            rule, reason, expected = rule_for(operation, node)
        if reason and isinstance(operation, keras.layers.Layer) and not isinstance(operation, keras.layers.InputLayer):
            self.kept.append((operation, reason, expected))
        if self._assume_pruned:
            self._assumed_zero.update(id(a.variable) for a in rule.axes(operation) if a.masked)
        outputs = rule.propagate(self, operation, node, inputs)
        self._passages.append((operation, rule, inputs, outputs))
        return outputs

    # -- what rules call -------------------------------------------------------------------------
    def weights(self, layer):
        """{name: numpy value} of a layer's weights; masked ones are zero with assume_pruned."""
        values = weights_by_name(layer)
        for variable in layer.weights:
            if id(variable) in self._assumed_zero:
                values[variable.name] = np.zeros_like(values[variable.name])
        return values

    def channels(self, tensor):
        """The `Channels` of a tensor already visited."""
        return self._tensors[id(tensor)]

    def frozen(self, count):
        return Channels(self.sets.new(count, frozen=True), False)

    def freeze(self, channels):
        self.sets.freeze(channels.labels)

    def join(self, first, second):
        self.sets.join(first, second)

    def sink(self, layer, channels, folds=False):
        """Records channels entering the weights of `layer`: removing them is exact only where they are zero, or,
        if its bias can take constants (`folds`) and with `fold_constants`, where they hold one constant."""
        folds = folds and self._fold_constants
        if folds:
            seen = self._folded.get(layer, channels.constant)
            self._folded[layer] = np.where(seen == channels.constant, seen, np.nan)
        self._sinks.append((layer, channels, folds))

    def _entries(self):
        """(layer, labels, removable there) of every sink: a foldable constant in all of the layer's calls, or 0."""
        for layer, channels, folds in self._sinks:
            yield layer, channels.labels, ~np.isnan(self._folded[layer]) if folds else channels.zero

    def bind(self, layer, role, labels):
        """Records the labels along a layer's `role` axis; a shared layer's calls are joined."""
        by_role = self.roles.setdefault(layer, {})
        if role in by_role:
            self.sets.join(by_role[role], labels)
        else:
            by_role[role] = labels

    def own(self, layer, role, count):
        """The labels of channels a layer creates: fresh on its first call, the same on later calls."""
        by_role = self.roles.setdefault(layer, {})
        if role not in by_role:
            by_role[role] = self.sets.new(count)
        return by_role[role]

    # -- results ---------------------------------------------------------------------------------
    def removable_roots(self):
        """The groups (as root labels) that are free and exactly zero wherever they enter a weight."""
        if not self._sinks:
            return set()
        _, labels, zero = zip(*self._entries())
        labels, zero = np.concatenate(labels), np.concatenate(zero)
        roots = self.sets.roots(labels)
        candidates = set(roots[zero].tolist()) - set(roots[~zero].tolist())
        return {root for root in candidates if not self.sets.is_frozen(root)}

    def keep_masks(self, layer, removed):
        """{role: bool array} for a layer: False where the channel's group is in `removed`."""
        return {role: ~np.isin(self.sets.roots(labels), list(removed))
                for role, labels in self.roles.get(layer, {}).items()}

    def constants(self, layer, removed):
        """The value of each of a layer's input channels if some of those in `removed` groups hold a non-zero
        constant (its bias takes them when they go), else None."""
        values = self._folded.get(layer)
        if values is None:
            return None
        gone = np.isin(self.sets.roots(self.roles[layer]["input"]), list(removed))
        return values if (values[gone] != 0).any() else None

    def _members_by_root(self, wanted):
        """{root: [(layer, role, indices)]} for the roots `wanted(root)` accepts, in order of appearance."""
        members = {}
        for layer, by_role in self.roles.items():
            for role, labels in by_role.items():
                roots = self.sets.roots(labels)
                order = np.argsort(roots, kind="stable")
                unique, starts = np.unique(roots[order], return_index=True)
                for root, indices in zip(unique.tolist(), np.split(order, starts[1:])):
                    if wanted(root):
                        members.setdefault(root, []).append((layer, role, indices))
        return members

    def revived_groups(self):
        """[(ChannelGroup, operation, consumer)]: groups that enter `operation` zero, or that its own masked
        weights zero (a Dense's kernel column and bias), and that it makes non-zero (a sigmoid, a normalization
        offset): the first such operation on each group's path; the group's first members are the channels it
        revives, and `consumer` is the first layer whose weights these enter neither zero nor as a constant its
        bias takes (None if they are merged into other channels first)."""
        first, revived, consumer = {}, {}, {}
        for operation, labels in self._revivals():
            for label, root in zip(labels.tolist(), self.sets.roots(labels).tolist()):
                first.setdefault(root, operation)
                revived.setdefault(label, root)
        for layer, labels, removable in self._entries():
            for label in labels[~removable].tolist():
                if label in revived:
                    consumer.setdefault(revived[label], layer)
        removable = self.removable_roots()
        members = self._members_by_root(
            lambda root: root in first and root not in removable and not self.sets.is_frozen(root))

        def revived_first(member):
            layer, role, indices = member
            return not np.isin(self.roles[layer][role][indices], list(revived)).any()

        return [(ChannelGroup(tuple(sorted(found, key=revived_first)), False), first[root], consumer.get(root))
                for root, found in members.items()]

    def _revivals(self):
        for operation, rule, inputs, outputs in self._passages:
            for channels in outputs:
                before = inputs[0].zero if len(inputs) == 1 and inputs[0].labels is channels.labels else None
                if before is None and self.roles.get(operation, {}).get("output") is channels.labels:
                    before = _zeroed_by_weights(operation, rule, "output")
                if before is not None and (before & ~channels.zero).any():
                    yield operation, channels.labels[before & ~channels.zero]

    def groups(self):
        """The groups that are not frozen, each a `ChannelGroup`."""
        removable = self.removable_roots()
        members = self._members_by_root(lambda root: not self.sets.is_frozen(root))
        return [ChannelGroup(tuple(found), root in removable) for root, found in members.items()]

    def channel_sets(self, roots):
        """The groups of `roots` gathered into `ChannelSet`s: groups touching the same weights in the same way."""
        roots = set(roots)
        by_signature = {}
        for root, found in self._members_by_root(roots.__contains__).items():
            signature = tuple((id(layer), role, len(indices)) for layer, role, indices in found)
            by_signature.setdefault(signature, []).append(found)
        return [ChannelSet([(layer, role, np.stack([group[i][2] for group in groups]))
                            for i, (layer, role, _) in enumerate(groups[0])])
                for groups in by_signature.values()]


@dataclasses.dataclass
class ChannelSet:
    """Channel groups that touch the same weights the same way: the filters of one Conv2D, its
    BatchNormalization and the next layer's rows. Importance is scored, and layer-scope sparsity
    applied, per set.

    Attributes:
        members: list of `(layer, role, indices)`, `indices` of shape (groups, entries per group).
    """

    members: list

    @property
    def size(self):
        return len(self.members[0][2])


def _zeroed_by_weights(layer, rule, role):
    """Per channel of a layer's `role`: True where every weight that channel pruning masks along it is zero."""
    axes = [axis for axis in rule.axes(layer) if axis.role == role and axis.masked]
    if not axes:
        return None
    zero = np.ones(axes[0].size, bool)
    for axis in axes:
        values = np.moveaxis(host_value(axis.variable), axis.axis, 0).reshape(axis.size, -1)
        zero &= ~np.any(values != 0, axis=1)
    return zero


def _names_of(layers, model):
    names = [layer if isinstance(layer, str) else layer.name for layer in (layers or ())]
    known = {layer.name for layer in layers_in(model)}  # nested and wrapped ones too
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"ignored_layers names layers that '{model.name}' does not have: {unknown}.")
    return names


def channel_groups(model, ignored_layers=None):
    """The groups of channels of `model` that must be pruned together.

    Args:
        model: a built Sequential or Functional Keras model (nested models are
            analysed inside, with their inputs and outputs kept).
        ignored_layers: layers (or their names) whose channels must be kept.

    Returns:
        A list of `ChannelGroup`, one per prunable channel. Channels of model
        inputs and outputs, and of layers the analysis keeps whole, are not listed.

    Example:

    >>> inputs = keras.Input((8,))
    >>> hidden = keras.layers.Dense(4, name="hidden")(inputs)
    >>> model = keras.Model(inputs, keras.layers.Dense(2, name="out")(hidden))
    >>> groups = channel_groups(model)
    >>> len(groups), groups[0].layers
    (4, ['hidden', 'out'])
    """
    return ChannelAnalysis(model, ignored_layers).groups()
