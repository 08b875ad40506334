"""`PruneLowMagnitude`: the Keras layer wrapper that owns masks and applies them.

Pruned entries are kept at zero in the weights themselves, so `call()` runs the
wrapped layer unchanged and training costs almost nothing extra per step:

- a mask update (outside the train step, by the model-level controller in
  `controller.py` that `UpdatePruningStep` drives) stores the new masks and zeroes
  the newly pruned weights;
- between updates, each pruned weight carries a variable constraint `w -> w * mask`,
  which Keras optimizers apply right after every step (after any constraint the
  layer already had), so pruned weights never come back.

Train pruned models with a Keras optimizer (`fit`, or `optimizer.apply` in a custom
loop): updates written to the variables by other means bypass the constraint. JAX's
`fit` runs the optimizer statelessly, where the masks are arrays of the train state:
there `UpdatePruningStep` wraps the train step to apply them (`stateless.masked_train_step`).
"""


import keras
from keras import ops

from tfprune import masks as masks_lib
from tfprune import registry, schedules
from tfprune.backend_calls import host_value, step_dtype
from tfprune.criteria.importance import MAGNITUDE
from tfprune.graph import compat
from tfprune.graph.traverse import layers_in
from tfprune.selection.allocation import check_scope

GLOBAL_MAX_LAYER_SPARSITY = 0.99


class KeepPruned:
    """The variable constraint `w -> inner(w) * mask` that keeps pruned entries at zero after optimizer steps.

    Set on top of the variable's own constraint (`inner`). The mask is a variable of the
    weight's shape (weight pruning), or with `channel_axis` one entry per channel along that
    axis, each covering `repeat` consecutive entries of it (channel pruning).
    """

    # True while JAX's train step is traced (`stateless.masked_train_step`): the step's masks are arrays of
    # its state, which the optimizer's stateless scope does not hold, so they are applied after it instead.
    deferred = False

    def __init__(self, mask, inner=None, channel_axis=None, repeat=1):
        self.mask, self.inner, self.channel_axis, self.repeat = mask, inner, channel_axis, repeat

    def __call__(self, value):
        own = self.inner
        while isinstance(own, KeepPruned):  # a weight masked along two channel axes carries two
            own = own.inner
        if own is not None:
            value = own(value)
        return value if self.deferred else self.apply_mask(value)

    def apply_mask(self, value):
        """`value` with the pruned entries zeroed, by the current values of this mask and of the `KeepPruned`
        constraints under it."""
        mask = ops.cast(self.mask.value, value.dtype)
        if self.channel_axis is not None:
            mask = broadcast_mask(mask, self.channel_axis, self.repeat, len(value.shape))
        value = ops.multiply(value, mask)
        return self.inner.apply_mask(value) if isinstance(self.inner, KeepPruned) else value


def broadcast_mask(mask, axis, repeat, rank):
    """A per-channel mask shaped to multiply a weight whose `axis` holds `repeat` entries per channel."""
    if repeat > 1:
        mask = ops.repeat(mask, repeat)
    shape = [1] * rank
    shape[axis] = -1
    return ops.reshape(mask, shape)


def _checked_max_layer_sparsity(max_layer_sparsity, scope, schedule):
    if scope != "global":
        if max_layer_sparsity is not None:
            raise ValueError("`max_layer_sparsity` caps global ranking; it needs scope='global'.")
        return None
    if max_layer_sparsity is None:
        return GLOBAL_MAX_LAYER_SPARSITY
    if not 0.0 < max_layer_sparsity <= 1.0:
        raise ValueError(f"`max_layer_sparsity` must be in (0, 1], got {max_layer_sparsity!r}.")
    if schedule.final_sparsity > max_layer_sparsity:
        raise ValueError(
            f"The global target sparsity {schedule.final_sparsity:g} exceeds max_layer_sparsity="
            f"{max_layer_sparsity:g}, the most any weight may be pruned, so it cannot be reached: raise "
            "max_layer_sparsity (at most 1.0) or lower the target."
        )
    return float(max_layer_sparsity)


class PruningWrapper(keras.layers.Wrapper):
    """What every tfprune wrapper shares: the pruning step it saves, and the check that a callback drives it.

    Subclasses create their masks in `build()` and call `_add_pruning_step()` there.
    """

    def __init__(self, layer, **kwargs):
        super().__init__(layer, **kwargs)
        if compat.input_shape_argument(self) is None and compat.input_shape_argument(layer) is not None:
            # so that a Sequential model starting with it is built
            compat.set_input_shape_argument(self, compat.input_shape_argument(layer))
        # Set by UpdatePruningStep (or a custom loop calling it); checked when a train step is traced.
        self.step_driven = False
        self.supports_masking = getattr(layer, "supports_masking", False)

    def _add_pruning_step(self):
        # Training steps taken, as in tfmot: -1 until the first fit, and the first batch is step 1.
        self.pruning_step = self.add_weight(
            name="pruning_step", shape=(), dtype=step_dtype(), initializer=keras.initializers.Constant(-1),
            trainable=False
        )

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
        if inputs is None:  # called with keyword arguments only, e.g. attention(query=q, value=v)
            return self.layer(*args, **kwargs)
        return self.layer(inputs, *args, **kwargs)

    def compute_mask(self, *args, **kwargs):
        return self.layer.compute_mask(*args, **kwargs)

    def compute_output_spec(self, *args, **kwargs):
        # The wrapped layer's own answer: tracing `call` symbolically instead fails under JAX for layers whose
        # call compares unknown sizes (keras-hub's TransformerEncoder), which answer from their output shape.
        return self.layer.compute_output_spec(*args, **kwargs)

    def release(self):
        """Writes the values inference uses into the inner layer and gives its variables back their own constraints.

        For `strip_pruning(copy=False)`: the inner layer is then a plain layer again, and this wrapper is spent.
        """
        values = self.masked_values()
        for variable in self.layer.weights:
            while isinstance(variable.constraint, KeepPruned):
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
        scope: "layer" (each weight pruned to the target on its own) or "global"
            (one magnitude threshold across every globally-pruned weight of the model).
        max_layer_sparsity: scope="global" only: the most any one weight of this layer
            is pruned; default 0.99.

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
        **kwargs,
    ):
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(f"PruneLowMagnitude wraps a Keras layer, got {type(layer).__name__}: {layer!r}.")
        if isinstance(layer, PruneLowMagnitude):
            raise ValueError(f"Layer '{layer.layer.name}' is already wrapped for pruning; do not prune it twice.")
        if not registry.is_supported(layer):
            raise ValueError(registry.unsupported_message(layer))
        check_scope(scope)
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

    def build(self, input_shape=None):
        if self.built:  # a container's build() may build its layers again, e.g. self.dense.build(shape)
            return
        if not self.layer.built:
            self.layer.build(input_shape)
        described = registry.describe_weights(self.layer)
        if not described and not registry.is_dense_by_design(self.layer):
            raise ValueError(registry.unsupported_message(self.layer))
        self.pruned_weights = [p.variable for p in described]
        self.weight_axes = [p.axes for p in described]
        for w, axes in zip(self.pruned_weights, self.weight_axes):
            self.granularity.check_fits(axes, w.shape, f"'{self.layer.name}/{w.name}'")
        self.masks = [
            self.add_weight(name=f"{w.name}_mask", shape=w.shape, dtype=w.dtype, initializer="ones", trainable=False)
            for w in self.pruned_weights
        ]
        self._add_pruning_step()
        for w, mask in zip(self.pruned_weights, self.masks):
            w.constraint = KeepPruned(mask, w.constraint)

    # --- mask updates: called outside the train step by the controller ---

    def compute_masks(self, sparsity, weights):
        """New masks for this layer alone from its current masked `weights`, at `sparsity` (ignored for N:M):
        one for all its weights, or a list with one per weight.

        Scores are magnitudes, so already-pruned entries score 0 and stay pruned.
        """
        scores = [MAGNITUDE.entry_scores(w) for w in weights]
        if self.granularity.m_by_n:
            m, n = self.granularity.m_by_n
            return [masks_lib.m_by_n_mask(s, m, n, axes) for s, axes in zip(scores, self.weight_axes)]
        per_weight = sparsity if isinstance(sparsity, (list, tuple)) else [sparsity] * len(scores)
        return masks_lib.threshold_masks(scores, 0.0, self.granularity, self.weight_axes, scope="layer",
                                         overrides=dict(enumerate(per_weight)))

    def apply_masks(self, new_masks, step):
        """Stores `new_masks`, zeroes the pruned entries of the weights and records `step`.

        Only keras.ops and variable assigns, so the controller can compile it into one graph call.
        """
        for w, m, new in zip(self.pruned_weights, self.masks, new_masks):
            new = ops.cast(new, m.dtype)  # masks have their weight's dtype
            m.assign(new)
            w.assign(ops.multiply(w.value, new))
        self.pruning_step.assign(step)

    def masked_weights(self):
        """(variable, numpy weight * mask) pairs: what inference actually uses."""
        return [(w, host_value(w) * host_value(m)) for w, m in zip(self.pruned_weights, self.masks)]

    def masked_values(self):
        """The inner layer's weights (in `layer.weights` order) with the pruned entries zeroed."""
        masked = {id(w): value for w, value in self.masked_weights()}
        return [masked[id(v)] if id(v) in masked else host_value(v) for v in self.layer.weights]

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
            }
        )
        return config


def pruning_wrappers(model):
    """All tfprune wrappers (`PruneLowMagnitude`, `PruneChannels`) inside `model`, nested models included."""
    if isinstance(model, PruningWrapper):
        return [model]
    return [layer for layer in layers_in(model) if isinstance(layer, PruningWrapper)]


def check_built(wrappers):
    """Raises ValueError naming the first of `wrappers` that is not built (its masks do not exist yet)."""
    for w in wrappers:
        if not w.built:
            raise ValueError(f"Pruned layer '{w.name}' is not built yet: call the model on data (or build it) first.")


def saved_step(wrappers):
    """Training steps taken, as stored in built `wrappers` (-1 before the first fit reads as 0)."""
    return max(0, *(int(host_value(w.pruning_step)) for w in wrappers if w.built))
