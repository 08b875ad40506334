"""`PruneChannels`: the wrapper that holds one channel mask per role of a layer and keeps pruned channels at zero.

As with `PruneLowMagnitude`, masks act on the weights, not on the forward pass: an
update zeroes the pruned channels' weights (kernel columns, biases, BatchNorm gamma
and beta, an attention head's output rows), and a variable constraint keeps them at
zero after every optimizer step. Which weights a role covers comes from the layer's
`Rule` (`rules.RoleAxis`, `masked=True`).
"""

import keras
import numpy as np
from keras import ops

from tfprune import schedules
from tfprune.backend_calls import HostTotals, host_value, record_taylor
from tfprune.criteria import importance as importance_lib
from tfprune.layers.table import rule_by_class
from tfprune.structured import penalties as penalties_lib
from tfprune.wrapper import KeepPruned, PruningWrapper, broadcast_mask


@keras.saving.register_keras_serializable(package="tfprune")
class PruneChannels(PruningWrapper):
    """Prunes whole channels of `layer` (units, filters, heads), as decided for the whole model.

    Created by `tfprune.prune_channels`, which wraps every layer with a weight along a
    prunable channel group; the settings are the same in all of them. The channel
    controller driven by `UpdatePruningStep` decides which groups to prune.

    Args:
        layer: the Keras layer.
        pruning_schedule: the fraction of channels pruned over time, or None (penalty only).
        importance: an importance name ("l1", "l2", "bn_scale", "taylor") or an `Importance`.
        scope: "layer" (each set of coupled channels pruned to the target) or "global".
        round_to: keep channel counts at multiples of this, or None.
        max_sparsity: the most any set of coupled channels is pruned.
        ignored_layers: names of the layers whose channels are kept.
        penalty: a `Penalty` on the channel groups (group lasso, L0 gates), or None.
        gate_roles: the roles whose channels carry this layer's L0 gates.
        gates_folded: True once `fold_gates` has folded the gates into the weights.
    """

    def __init__(self, layer, pruning_schedule=None, importance="l2", scope="layer", round_to=None,
                 max_sparsity=0.9, ignored_layers=(), penalty=None, gate_roles=(), gates_folded=False, **kwargs):
        kwargs.setdefault("name", f"prune_channels_{layer.name}")
        super().__init__(layer, **kwargs)
        if isinstance(pruning_schedule, dict):
            pruning_schedule = schedules.deserialize(pruning_schedule)  # None stays None: a penalty-only run
        self.pruning_schedule = pruning_schedule
        self.importance = importance_lib.get(importance)
        self.scope = scope
        self.round_to = round_to
        self.max_sparsity = max_sparsity
        self.ignored_layers = tuple(ignored_layers)
        self.penalty = penalties_lib.get(penalty)
        self.penalty_terms = []  # set by the controller: the channel sets whose penalty this wrapper adds
        self.gate_roles, self.gates_folded = tuple(gate_roles), bool(gates_folded)
        self.log_alpha, self.gate_sizes = {}, {}
        self.role_axes = []
        self.channel_masks = {}
        self.taylor = None  # (sum, batches) variables when the importance needs gradients

    @property
    def settings(self):
        """What every wrapper of one `prune_channels` call shares."""
        return (self.pruning_schedule, self.importance, self.scope, self.round_to, self.max_sparsity,
                self.ignored_layers, self.penalty)

    def build(self, input_shape=None):
        if self.built:  # a container's build() may build its layers again, e.g. self.dense.build(shape)
            return
        if not self.layer.built:
            self.layer.build(input_shape)
        self.role_axes = [a for a in rule_by_class(self.layer)[0].axes(self.layer) if a.masked]
        for axis in self.role_axes:
            if axis.role not in self.channel_masks:
                self.channel_masks[axis.role] = self.add_weight(
                    name=f"{axis.role}_mask", shape=(axis.size,), initializer="ones", trainable=False)
        self._add_pruning_step()
        if self.importance.needs_gradients and "output" in self.channel_masks:
            self.taylor = (
                self.add_weight(name="taylor_sum", shape=self.channel_masks["output"].shape, initializer="zeros",
                                trainable=False),
                self.add_weight(name="taylor_batches", shape=(), initializer="zeros", trainable=False),
            )
            self._taylor_on_host = (HostTotals(self.channel_masks["output"].shape[0])
                                    if keras.backend.backend() == "jax" else None)
        for role in self.gate_roles:
            self.log_alpha[role] = self.add_weight(
                name=f"{role}_log_alpha", shape=self.channel_masks[role].shape,
                initializer=keras.initializers.Constant(self.penalty.initial_log_alpha))
            self.gate_sizes[role] = sum(np.prod(a.variable.shape) // a.size for a in self.role_axes if a.role == role)
        if self.gate_roles:
            # A stream of its own per layer (same-width layers shared their noise); keras.utils.set_random_seed
            # makes it reproducible, as it does Dropout's.
            self._gate_seed = keras.random.SeedGenerator()
            self._gates_on_outputs = isinstance(self.layer, keras.layers.BatchNormalization) or (
                self.gate_roles == ("output",) and _commutes_with_scaling(getattr(self.layer, "activation", None)))
        for axis in self.role_axes:
            variable = axis.variable
            variable.constraint = KeepPruned(self.channel_masks[axis.role], variable.constraint, axis.axis,
                                             axis.repeat)

    def call(self, inputs=None, *args, training=None, **kwargs):
        if self.gate_roles and not self.gates_folded:
            outputs = self._gated_call(inputs, *args, training=training, **kwargs)
        else:
            outputs = super().call(inputs, *args, training=training, **kwargs)
        if training and self.taylor is not None and not isinstance(outputs, (tuple, list)):
            outputs = record_taylor(outputs, *self.taylor, self._taylor_on_host)
        if self.penalty_terms:
            self.add_loss(self.penalty.strength_at(ops.convert_to_tensor(self.pruning_step))
                          * sum(self.penalty.loss(term.squared_norms(), term.sizes) for term in self.penalty_terms))
        return outputs

    def _gated_call(self, inputs, *args, training=None, **kwargs):
        """The layer's call with its L0 gates applied, adding the gates' penalty as a loss.

        The output is multiplied by the gates where that equals gating the weights: a
        BatchNormalization (whose moving statistics must update as usual), or a layer whose
        activation commutes with scaling (linear, ReLU), which is also cheaper. Other layers
        see their gated weights through a StatelessScope.
        """
        gates = {role: self.penalty.gates(self.log_alpha[role], training, self._gate_seed) for role in self.gate_roles}
        strength = self.penalty.strength_at(ops.convert_to_tensor(self.pruning_step))
        self.add_loss(strength * sum(self.penalty.loss(self.log_alpha[role], self.gate_sizes[role])
                                     for role in self.gate_roles))
        if self._gates_on_outputs:
            (gate,) = gates.values()
            return super().call(inputs, *args, training=training, **kwargs) * gate
        mapping = [(a.variable, ops.convert_to_tensor(a.variable)
                    * broadcast_mask(gates[a.role], a.axis, a.repeat, len(a.variable.shape)))
                   for a in self.role_axes if a.role in gates]
        with keras.StatelessScope(state_mapping=mapping):
            return super().call(inputs, *args, training=training, **kwargs)

    def deterministic_gates(self):
        """{role: numpy z} of the inference gates."""
        return {role: host_value(self.penalty.gates(self.log_alpha[role], False, None))
                for role in self.gate_roles}

    def fold_gates(self):
        """Multiplies the gated weights by the inference gates and turns the gates off; returns the gates."""
        gates = self.deterministic_gates()
        for axis in self.role_axes:
            if axis.role in gates:
                mask = broadcast_mask(ops.convert_to_tensor(gates[axis.role], axis.variable.dtype), axis.axis,
                                      axis.repeat, len(axis.variable.shape))
                axis.variable.assign(ops.multiply(axis.variable.value, mask))
        self.gates_folded = True
        return gates

    def recorded_taylor(self):
        """Mean squared gate gradient per output channel since the last reset, or None before any batch."""
        total, batches = (host_value(v) for v in self.taylor)
        if self._taylor_on_host is not None:
            on_host, batches_on_host = self._taylor_on_host.read()
            total, batches = total + on_host, batches + batches_on_host
        return total / batches if batches > 0 else None

    def reset_taylor(self):
        for variable in self.taylor:
            variable.assign(keras.ops.zeros(variable.shape, variable.dtype))
        if self._taylor_on_host is not None:
            self._taylor_on_host.reset()

    def apply_masks(self, masks, step):
        """Stores `masks` ({role: bool array}), zeroes the pruned channels' weights and records `step`."""
        for role, mask in masks.items():
            self.channel_masks[role].assign(mask.astype("float32"))
        for axis in self.role_axes:
            mask = broadcast_mask(ops.cast(self.channel_masks[axis.role].value, axis.variable.dtype), axis.axis,
                                  axis.repeat, len(axis.variable.shape))
            axis.variable.assign(ops.multiply(axis.variable.value, mask))
        self.pruning_step.assign(step)

    def pruned(self, role):
        """Bool array: True where the role's channel is pruned."""
        return host_value(self.channel_masks[role]) == 0

    def masked_values(self):
        """The inner layer's weights (in `layer.weights` order) as inference uses them: pruned channels zeroed,
        L0 gates not yet folded multiplied in."""
        values = {id(v): host_value(v) for v in self.layer.weights}
        gates = self.deterministic_gates() if self.gate_roles and not self.gates_folded else {}
        for axis in self.role_axes:
            factor = (~self.pruned(axis.role)).astype("float32") * gates.get(axis.role, 1.0)
            mask = broadcast_mask(factor, axis.axis, axis.repeat, len(axis.variable.shape))
            values[id(axis.variable)] = values[id(axis.variable)] * host_value(mask)
        return [values[id(v)] for v in self.layer.weights]

    def get_config(self):
        config = super().get_config()
        config.update({
            "pruning_schedule": None if self.pruning_schedule is None else schedules.serialize(self.pruning_schedule),
            "importance": importance_lib.serialize(self.importance),
            "scope": self.scope,
            "round_to": self.round_to,
            "max_sparsity": self.max_sparsity,
            "ignored_layers": list(self.ignored_layers),
            "penalty": penalties_lib.serialize(self.penalty),
            "gate_roles": list(self.gate_roles),
            "gates_folded": self.gates_folded,
        })
        return config



def _commutes_with_scaling(activation):
    """True if activation(z * x) == z * activation(x) for z >= 0 (linear, ReLU, LeakyReLU), checked on samples."""
    if activation is None:
        return False
    x = np.array([[-10.0, -3.0, -1.0, 0.0, 0.5, 1.0, 4.0, 10.0]], "float32")
    single, double = (host_value(activation(keras.ops.convert_to_tensor(v))) for v in (x, 2 * x))
    return bool(np.allclose(double, 2 * single, rtol=1e-6, atol=0))


class PenaltyTerm:
    """The weights of one set of channel groups, gathered per group inside the train step.

    `slices` are (variable, axis, repeat, rows): `rows` (groups, k) index the variable's
    channels along `axis` (each `repeat` entries wide); `sizes` are the weights per group.
    """

    def __init__(self, slices, sizes):
        self.slices, self.sizes = slices, ops.convert_to_tensor(sizes, "float32")

    def squared_norms(self):
        """Squared L2 norm of each group: per-channel sums of squares first (no gather of whole weights)."""
        total = 0.0
        for variable, axis, repeat, rows in self.slices:
            value = ops.convert_to_tensor(variable)
            per_entry = ops.sum(ops.square(value), axis=[a for a in range(len(variable.shape)) if a != axis])
            per_channel = ops.sum(ops.reshape(per_entry, (-1, repeat)), axis=1)
            total = total + ops.sum(ops.take(per_channel, rows, axis=0), axis=1)
        return total
