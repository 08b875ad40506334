"""The pruning wrapper: one Keras layer wrapper that owns a layer's masks and applies them.

Pruned entries are kept at zero in the weights themselves, so `call()` runs the
wrapped layer unchanged and training costs almost nothing extra per step:

- a mask update (outside the train step, by the model-level controller in
  `tfprune/controller.py` that `UpdatePruningStep` drives) stores the new masks and
  zeroes the newly pruned weights (`apply_masks`);
- between updates, each masked weight carries the variable constraint `KeepPruned`
  (`w -> w * mask`), which Keras optimizers apply right after every step (after any
  constraint the layer already had), so pruned weights never come back.

What is pruned is a list of `MaskedWeight`s: a weight and a mask of its shape (weights
pruned entry by entry, in blocks or N:M), or a weight and one mask entry per channel along
an axis (channels). The two are built by the wrapper's two registered constructors,
`PruneLowMagnitude` (weights) and `PruneChannels` (channels, with the optional pieces
`ChannelGates` for L0 gates and `TaylorRecorder` for Taylor importance); everything after
building (mask updates, the constraint, the call, inference values, release) is this one
class's.

Train pruned models with a Keras optimizer (`fit`, or `optimizer.apply` in a custom
loop): updates written to the variables by other means bypass the constraint. JAX's
`fit` runs the optimizer statelessly, where the masks are arrays of the train state:
there `UpdatePruningStep` wraps the train step to apply them (`stateless.masked_train_step`).
"""

import keras
import numpy as np
from keras import ops

from tfprune import masks as masks_lib
from tfprune import registry, schedules
from tfprune.apply import penalties as penalties_lib
from tfprune.apply.constraint import KeepPruned, MaskedWeight, keep_pruned
from tfprune.apply.gates import ChannelGates
from tfprune.apply.gradient_tap import STATISTICS as TAPPED_STATISTICS
from tfprune.apply.taylor import TaylorRecorder
from tfprune.backend_calls import host_value, step_dtype
from tfprune.criteria import importance as importance_lib
from tfprune.graph import compat
from tfprune.graph.traverse import layers_in
from tfprune.layers.table import rule_by_class
from tfprune.selection import budget as budgets
from tfprune.selection.allocation import WEIGHT_SCOPES, check_scope

GLOBAL_MAX_LAYER_SPARSITY = 0.99


def _checked_max_layer_sparsity(max_layer_sparsity, scope, schedule):
    if scope == "layer":
        if max_layer_sparsity is not None:
            raise ValueError("`max_layer_sparsity` caps global ranking and ERK; it needs scope='global' or 'erk'.")
        return None
    if max_layer_sparsity is None:
        return GLOBAL_MAX_LAYER_SPARSITY
    if not 0.0 < max_layer_sparsity <= 1.0:
        raise ValueError(f"`max_layer_sparsity` must be in (0, 1], got {max_layer_sparsity!r}.")
    if schedule.final_sparsity > max_layer_sparsity:
        raise ValueError(
            f"The model's target sparsity {schedule.final_sparsity:g} exceeds max_layer_sparsity="
            f"{max_layer_sparsity:g}, the most any weight may be pruned, so it cannot be reached: raise "
            "max_layer_sparsity (at most 1.0) or lower the target."
        )
    return float(max_layer_sparsity)


class PruningWrapper(keras.layers.Wrapper):
    """The pruning wrapper of one layer: its masked weights, the pruning step it saves, its optional pieces.

    Built by its two registered constructors, `PruneLowMagnitude` and `PruneChannels`, which
    say what is masked (`_mask_weights`) and which pieces the layer gets (`_add_pieces`).

    Attributes (once built):
        masked: the `MaskedWeight`s, one per weight and mask.
        masks: the mask variables, each once (a channel mask may cover several weights), derived from `masked`.
        pruning_step: training steps taken, as in tfmot: -1 until the first fit, the first batch is step 1.
        gates, taylor, penalty_terms: the L0 gates (`ChannelGates`), the Taylor recorder
            (`TaylorRecorder`) and the penalties the channel controller attached, or None / [].
    """

    def __init__(self, layer, **kwargs):
        super().__init__(layer, **kwargs)
        if compat.input_shape_argument(self) is None and compat.input_shape_argument(layer) is not None:
            # so that a Sequential model starting with it is built
            compat.set_input_shape_argument(self, compat.input_shape_argument(layer))
        # Set by UpdatePruningStep (or a custom loop calling it); checked when a train step is traced.
        self.step_driven = False
        self.supports_masking = getattr(layer, "supports_masking", False)
        self.masked = []
        self.gates, self.taylor, self.penalty = None, None, None
        self.penalty_terms = []  # set by the channel controller: the channel sets whose penalty this wrapper adds

    def build(self, input_shape=None):
        if self.built:  # a container's build() may build its layers again, e.g. self.dense.build(shape)
            return
        if not self.layer.built:
            self.layer.build(input_shape)
        self.masked = self._mask_weights()
        self.pruning_step = self.add_weight(
            name="pruning_step", shape=(), dtype=step_dtype(), initializer=keras.initializers.Constant(-1),
            trainable=False
        )
        self._add_pieces()
        keep_pruned(self.masked)

    @property
    def masks(self):
        return list({id(m.mask): m.mask for m in self.masked}.values())

    @property
    def active_gates(self):
        """The L0 gates while they act (not yet folded into the weights), or None."""
        return None if self.gates is None or self.gates_folded else self.gates

    def _mask_weights(self):
        """Creates the mask variables; returns the `MaskedWeight`s."""
        raise NotImplementedError(f"{type(self).__name__} must implement _mask_weights().")

    def _add_pieces(self):
        """Creates the optional pieces (gates, Taylor recorder) after the masks and the step."""

    def get_build_config(self):
        # The wrapped layer's own shapes, so that layers with several inputs (attention) rebuild on load.
        return self.layer.get_build_config()

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return super().from_config(dict(config), custom_objects)  # keras.layers.Wrapper pops from the dict it gets

    def build_from_config(self, config):
        if config and not self.layer.built:
            self.layer.build_from_config(config)
        self.build()

    def call(self, inputs=None, *args, training=None, **kwargs):
        if training and not self.step_driven:
            lost = (" Under JAX, Keras has emptied the model's variables for this fit and does not refill them after "
                    "an error: prune the original model again (pruning returns a copy), or load the last saved one."
                    if self.layer.weights and compat.is_emptied(self.layer.weights[0])
                    else "")
            raise RuntimeError(
                f"'{self.name}' is being trained without the pruning step callback, so its masks would never "
                "update. Add it: model.fit(..., callbacks=[tfprune.UpdatePruningStep()]). In a custom training "
                f"loop, call the callback's on_train_begin() / on_train_batch_begin() yourself (see README).{lost}"
            )

        def layer_call():
            if inputs is None:  # called with keyword arguments only, e.g. attention(query=q, value=v)
                return self.layer(*args, **kwargs)
            return self.layer(inputs, *args, **kwargs)

        if self.active_gates is not None:
            outputs, loss = self.gates.call(layer_call, training, self._penalty_strength())
            self.add_loss(loss)
        else:
            outputs = layer_call()
        if training and self.taylor is not None and not isinstance(outputs, (tuple, list)):
            outputs = self.taylor.record(outputs)
        if self.penalty_terms:
            self.add_loss(self._penalty_strength() * sum(self.penalty.loss(term.squared_norms(), term.sizes)
                                                         for term in self.penalty_terms))
        return outputs

    def _penalty_strength(self):
        return self.penalty.strength_at(ops.convert_to_tensor(self.pruning_step))

    def compute_mask(self, *args, **kwargs):
        return self.layer.compute_mask(*args, **kwargs)

    def compute_output_spec(self, *args, **kwargs):
        # The wrapped layer's own answer: tracing `call` symbolically instead fails under JAX for layers whose
        # call compares unknown sizes (keras-hub's TransformerEncoder), which answer from their output shape.
        return self.layer.compute_output_spec(*args, **kwargs)

    # --- mask updates: called outside the train step by the controller ---

    def apply_masks(self, new_masks, step):
        """Stores `new_masks` (one per variable of `masks`), zeroes the pruned entries of the weights and
        records `step`.

        Only keras.ops and variable assigns, so the controller can compile it into one graph call.
        """
        for mask, new in zip(self.masks, new_masks):
            mask.assign(ops.cast(new, mask.dtype))
        self.reapply_masks()
        self.pruning_step.assign(step)

    def reapply_masks(self):
        """Zeroes the pruned entries of the weights by the current masks, e.g. after the optimizer swapped in
        averaged (EMA) weights."""
        for m in self.masked:
            m.multiply_weight()

    def fold_gates(self):
        """Multiplies the gated weights by the inference gates and turns the gates off; returns the gates."""
        gates = self.gates.fold()
        self.gates_folded = True
        return gates

    def weight_mask(self, variable):
        """Bool array of `variable`'s shape: False where its entries are pruned (by any of its masks)."""
        kept = np.ones(variable.shape, bool)
        for m in self.masked:
            if m.variable is variable:
                kept &= host_value(m.full_mask()) != 0
        return kept

    def masked_values(self):
        """The inner layer's weights (in `layer.weights` order) as inference uses them: pruned entries zeroed,
        L0 gates not yet folded multiplied in."""
        values = {id(v): host_value(v) for v in self.layer.weights}
        gates = self.active_gates.inference() if self.active_gates is not None else {}
        for m in self.masked:
            factor = host_value(m.mask) * gates.get(m.role, 1.0)
            values[id(m.variable)] = values[id(m.variable)] * host_value(m.full_mask(factor))
        return [values[id(v)] for v in self.layer.weights]

    def release(self):
        """Writes the values inference uses into the inner layer and gives its variables back their own constraints.

        For `strip_pruning(copy=False)`: the inner layer is then a plain layer again, and this wrapper is spent.
        """
        values = self.masked_values()
        for variable in self.layer.weights:
            if isinstance(variable.constraint, KeepPruned):
                variable.constraint = variable.constraint.inner
        self.layer.set_weights(values)


@keras.saving.register_keras_serializable(package="tfprune")
class PruneLowMagnitude(PruningWrapper):
    """Prunes the weights of `layer` to the sparsity given by `pruning_schedule`.

    Normally created by `tfprune.prune_low_magnitude`, not directly.

    Args:
        layer: the Keras layer to prune; see `tfprune.registry` for what is supported.
        pruning_schedule: a `PruningSchedule`; default `ConstantSparsity(0.5)`.
        block_size, block_pooling_type, sparsity_m_by_n: the pruning granularity,
            see `tfprune.masks`.
        scope: "layer" (each weight pruned to the target on its own), "global" (one
            magnitude threshold across every globally-pruned weight of the model) or "erk"
            (the target spread over the weights by Erdős–Rényi-Kernel).
        max_layer_sparsity: scope="global" or "erk" only: the most any one weight of this
            layer is pruned; default 0.99.
        importance: what ranks the weight entries: "magnitude" (the default), "lamp", "obd",
            "movement" or an `Importance`; see `tfprune.criteria.importance`.

    Example:

    >>> layer = PruneLowMagnitude(keras.layers.Dense(4), ConstantSparsity(0.75))
    >>> layer.build((None, 8))
    >>> [m.shape for m in layer.masks]
    [(8, 4)]
    """

    def __init__(
        self,
        layer,
        pruning_schedule=None,
        block_size=(1, 1),
        block_pooling_type="AVG",
        sparsity_m_by_n=None,
        scope="layer",
        max_layer_sparsity=None,
        importance="magnitude",
        **kwargs,
    ):
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(f"PruneLowMagnitude wraps a Keras layer, got {type(layer).__name__}: {layer!r}.")
        if isinstance(layer, PruneLowMagnitude):
            raise ValueError(f"Layer '{layer.layer.name}' is already wrapped for pruning; do not prune it twice.")
        if not registry.is_supported(layer):
            raise ValueError(registry.unsupported_message(layer))
        check_scope(scope, WEIGHT_SCOPES)
        kwargs.setdefault("name", f"prune_low_magnitude_{layer.name}")
        super().__init__(layer, **kwargs)
        if isinstance(pruning_schedule, dict):
            pruning_schedule = schedules.deserialize(pruning_schedule)
        self.pruning_schedule = pruning_schedule or schedules.ConstantSparsity(0.5)
        if not isinstance(self.pruning_schedule, schedules.PruningSchedule):
            raise ValueError(
                f"`pruning_schedule` must be a tfprune PruningSchedule such as ConstantSparsity or "
                f"PolynomialDecay, got {type(self.pruning_schedule).__name__}."
            )
        self.granularity = masks_lib.Granularity(block_size, block_pooling_type, sparsity_m_by_n)
        self.scope = scope
        self.max_layer_sparsity = _checked_max_layer_sparsity(max_layer_sparsity, scope, self.pruning_schedule)
        self.importance = importance_lib.get(importance)
        if self.importance.needs_gradients:
            raise ValueError(f"{type(self.importance).__name__} scores channels; weights are ranked by 'magnitude', "
                             "'lamp', 'obd' or 'movement'.")
        one_shot = self.importance.statistic is not None and self.importance.statistic not in TAPPED_STATISTICS
        if one_shot and not isinstance(self.pruning_schedule, schedules.FixedMasks):
            raise ValueError(f"{type(self.importance).__name__} scores weights in one shot, from data: "
                             "tfprune.prune_once(model, sparsity, importance, data=(x, y)).")
        self.pruned_weights = []

    # tfmot's attribute names for the granularity
    @property
    def block_size(self):
        return self.granularity.block_size

    @property
    def block_pooling_type(self):
        return self.granularity.block_pooling_type

    @property
    def sparsity_m_by_n(self):
        return self.granularity.m_by_n

    @property
    def weight_axes(self):
        """The `WeightAxes` of each masked weight, in the order of `masks`."""
        return [m.axes for m in self.masked]

    def _mask_weights(self):
        described = registry.describe_weights(self.layer)
        if not described and not registry.is_dense_by_design(self.layer):
            raise ValueError(registry.unsupported_message(self.layer))
        # An attribute, so the wrapper also saves these weights as its own (the layout of every .keras file so far).
        self.pruned_weights = [p.variable for p in described]
        for p in described:
            self.granularity.check_fits(p.axes, p.variable.shape, f"'{self.layer.name}/{p.variable.name}'")
        return [MaskedWeight(p.variable, self.add_weight(name=f"{p.variable.name}_mask", shape=p.variable.shape,
                                                         dtype=p.variable.dtype, initializer="ones", trainable=False),
                             axes=p.axes)
                for p in described]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "pruning_schedule": schedules.serialize(self.pruning_schedule),
                "block_size": list(self.granularity.block_size),
                "block_pooling_type": self.granularity.block_pooling_type,
                "sparsity_m_by_n": None if self.granularity.m_by_n is None else list(self.granularity.m_by_n),
                "scope": self.scope,
                "max_layer_sparsity": self.max_layer_sparsity,
                "importance": importance_lib.serialize(self.importance),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="tfprune")
class PruneChannels(PruningWrapper):
    """Prunes whole channels of `layer` (units, filters, heads), as decided for the whole model.

    Created by `tfprune.prune_channels`, which wraps every layer with a weight along a
    prunable channel group; the settings are the same in all of them. The channel part of
    the controller that `UpdatePruningStep` drives decides which groups to prune. Which
    weights a channel role masks comes from the layer's `Rule` (`rules.RoleAxis`, `masked=True`).

    Args:
        layer: the Keras layer.
        pruning_schedule: the fraction of channels pruned over time, or None (penalty only).
        importance: an importance name ("l1", "l2", "bn_scale", "taylor") or an `Importance`.
        scope: "layer" (each set of coupled channels pruned to the target) or "global".
        round_to: keep channel counts at multiples of this, or None.
        max_sparsity: the most any set of coupled channels is pruned.
        ignored_layers: names of the layers whose channels are kept.
        penalty: a `Penalty` on the channel groups (group lasso, L0 gates), or None.
        budget: a `Budget` (`FlopsBudget`, `ParamsBudget`) the channel counts are chosen to meet, or None.
        gate_roles: the roles whose channels carry this layer's L0 gates.
        gates_folded: True once `fold_gates` has folded the gates into the weights.
    """

    def __init__(self, layer, pruning_schedule=None, importance="l2", scope="layer", round_to=None,
                 max_sparsity=0.9, ignored_layers=(), penalty=None, budget=None, gate_roles=(), gates_folded=False,
                 **kwargs):
        kwargs.setdefault("name", f"prune_channels_{layer.name}")
        super().__init__(layer, **kwargs)
        if isinstance(pruning_schedule, dict):
            pruning_schedule = schedules.deserialize(pruning_schedule)  # None stays None: a penalty-only run
        self.pruning_schedule = pruning_schedule
        self.importance = importance_lib.get(importance)
        if self.importance.statistic is not None:
            raise ValueError(f"{type(self.importance).__name__} scores single weights: use it with "
                             "tfprune.prune_low_magnitude or tfprune.prune_once; channels are ranked by 'l1', 'l2', "
                             "'bn_scale', 'taylor' or 'lamp'.")
        self.scope = scope
        self.round_to = round_to
        self.max_sparsity = max_sparsity
        self.ignored_layers = tuple(ignored_layers)
        self.penalty = penalties_lib.get(penalty)
        self.budget = budgets.get(budget)
        self.gate_roles, self.gates_folded = tuple(gate_roles), bool(gates_folded)

    @property
    def settings(self):
        """What every wrapper of one `prune_channels` call shares."""
        return (self.pruning_schedule, self.importance, self.scope, self.round_to, self.max_sparsity,
                self.ignored_layers, self.penalty, self.budget)

    @property
    def channel_masks(self):
        """{role: its mask variable}."""
        return {m.role: m.mask for m in self.masked}

    def _mask_weights(self):
        masked, by_role = [], {}
        for axis in rule_by_class(self.layer)[0].axes(self.layer):
            if not axis.masked:
                continue
            if axis.role not in by_role:
                by_role[axis.role] = self.add_weight(name=f"{axis.role}_mask", shape=(axis.size,), initializer="ones",
                                                     trainable=False)
            masked.append(MaskedWeight(axis.variable, by_role[axis.role], axis.axis, axis.repeat, axis.role))
        return masked

    def _add_pieces(self):
        if self.importance.needs_gradients and "output" in self.channel_masks:
            self.taylor = TaylorRecorder(self, self.channel_masks["output"].shape[0])
        if self.gate_roles:
            # A stream of its own per layer, held by the wrapper so that JAX's train step carries its state;
            # keras.utils.set_random_seed makes it reproducible, as it does Dropout's.
            self._gate_seed = keras.random.SeedGenerator()
            self.gates = ChannelGates(self, self.penalty, self.gate_roles, self._gate_seed)

    def pruned(self, role):
        """Bool array: True where the role's channel is pruned."""
        return host_value(self.channel_masks[role]) == 0

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
            "budget": budgets.serialize(self.budget),
            "gate_roles": list(self.gate_roles),
            "gates_folded": self.gates_folded,
        })
        return config


def pruning_wrappers(model):
    """All tfprune wrappers (`PruneLowMagnitude`, `PruneChannels`) inside `model`, nested models included."""
    if isinstance(model, PruningWrapper):
        return [model]
    return [layer for layer in layers_in(model) if isinstance(layer, PruningWrapper)]


def check_built(wrappers):
    """Raises ValueError naming the first of `wrappers` that is not built (its masks do not exist yet). Wrappers of
    weightless layers (Dropout: their step only) are built here: a loaded model may not have called them yet."""
    for w in wrappers:
        if not w.built and not w.layer.weights:
            try:
                w.build()
            except (TypeError, ValueError):  # a layer that needs its input shape (Dense): not weightless
                pass
        if not w.built:
            raise ValueError(f"Pruned layer '{w.name}' is not built yet: call the model on data (or build it) first.")


def saved_step(wrappers):
    """Training steps taken, as stored in built `wrappers` (-1 before the first fit reads as 0)."""
    return max(0, *(int(host_value(w.pruning_step)) for w in wrappers if w.built))
