"""How each kind of layer moves channels, and how it loses them.

A `Rule` does two things for one family of layers:
- `propagate(walk, layer, node, inputs)`: given the `Channels` of the node's
  input tensors, records which weight axes carry which labels (`walk.bind`,
  `walk.own`), where channels enter weights (`walk.sink`), and returns the
  `Channels` of the node's outputs;
- `shrink(layer, keep)`: given a boolean keep-mask per recorded role, returns
  `(config, weights)` of the smaller layer, or None if the layer is unchanged.
  A Dense or Conv whose removed inputs held constants also gets their values
  (`constants`), and takes what they added to every output into its bias.

Channels-last only: the channel axis of every tensor is its last one.
"""

import dataclasses

import keras
import numpy as np
from keras import layers as L

from tfprune.backend_calls import host_value
from tfprune.graph import compat
from tfprune.structured.labels import Channels


def channel_count(tensor):
    """Size of the channel (last) axis, or 0 for a tensor without one (rank 1, or unknown size)."""
    shape = tensor.shape
    return shape[-1] if len(shape) >= 2 and shape[-1] is not None else 0


def weights_by_name(layer):
    """{variable name: numpy value} of a layer's own weights (first of each name)."""
    values = {}
    for variable in layer.weights:
        values.setdefault(variable.name, host_value(variable))
    return values


@dataclasses.dataclass(frozen=True)
class RoleAxis:
    """A weight axis along which the channels of one of its layer's roles run.

    Attributes:
        role: "output", "input", "channel", "heads", or "query"/"key"/"value".
        variable: the weight.
        axis: its axis (non-negative) indexed by the role's channels.
        repeat: entries per channel along the axis (a depthwise bias holds `multiplier` per channel).
        masked: True if channel pruning zeroes it with the channel; False if it is only scored.
    """

    role: str
    variable: keras.Variable
    axis: int
    repeat: int = 1
    masked: bool = True

    @property
    def size(self):
        return self.variable.shape[self.axis] // self.repeat


def _variable(layer, name):
    return next(v for v in layer.weights if v.name == name)


def _axis(variable, axis):
    return axis % len(variable.shape)


def values_through(function, values):
    """`function` applied to each of `values` on its own (None is the identity; NaN, an unknown value, stays NaN).

    All NaN if `function` is not element-wise (softmax: a channel's value then depends on the others)."""
    values = np.asarray(values, dtype=np.float64)
    known = ~np.isnan(values)
    if function is None or not known.any():
        return values
    probe = np.concatenate([values[known], [-1.0, 0.0, 1.0]]).astype("float32")
    row = host_value(function(keras.ops.convert_to_tensor(probe[None])))
    column = host_value(function(keras.ops.convert_to_tensor(probe[:, None])))
    result = np.full(len(values), np.nan)
    if row.shape == (1, len(probe)) and np.allclose(row[0], column.reshape(-1), rtol=1e-6, atol=0):
        result[known] = row[0, :known.sum()]
    return result


def elementwise_function(operation):
    """What an activation layer, or an activation written as an expression, applies to each value."""
    if isinstance(operation, L.Activation):
        return operation.activation
    return operation.call if isinstance(operation, L.Layer) else operation


def _outputs(labels, dead, weights, layer):
    """The `Channels` of a layer's outputs: those `dead` (no non-zero input reaches them) hold activation(bias)."""
    constant = values_through(getattr(layer, "activation", None), np.where(dead, weights.get("bias", 0.0), np.nan))
    return Channels(labels, constant == 0, constant)


def _dead_outputs(kernel, input_zero, input_axis, output_axis):
    """Output channels to which only zero inputs (or zero kernel entries) contribute."""
    kernel = np.moveaxis(kernel, (input_axis, output_axis), (-2, -1))
    if input_zero is not None:
        kernel = kernel[..., ~input_zero, :]
    return ~np.any(kernel != 0, axis=tuple(range(kernel.ndim - 1)))


def _take(array, keep, axis):
    return np.take(array, np.flatnonzero(keep), axis=axis)


class Rule:
    """How one family of layers moves channels (`propagate`) and loses them (`shrink`)."""

    def unsupported(self, layer, node):
        """Why this rule cannot follow `layer` here (then its channels are kept), or None."""
        return None

    def propagate(self, walk, layer, node, inputs):
        raise NotImplementedError(f"{type(self).__name__} must implement propagate()")

    def shrink(self, layer, keep):
        return None

    def axes(self, layer):
        """The `RoleAxis`es of the layer's weights: what channel pruning masks and importance scores."""
        return []


class Boundary(Rule):
    """A layer whose channels are kept: its inputs and outputs are frozen."""

    def propagate(self, walk, layer, node, inputs):
        for source in inputs:
            walk.freeze(source)
        return [walk.frozen(channel_count(t)) for t in node.output_tensors]


class PassThrough(Rule):
    """One input, one output, each channel handled on its own (pooling, padding, dropout, activations).

    `activation`: the layer applies an element-wise function, which maps a zero or constant channel to its value.
    `keeps_constants`: False for layers that write zeros into some positions (padding), where a constant
    channel stops being one.
    """

    def __init__(self, activation=False, keeps_constants=True):
        self.activation, self.keeps_constants = activation, keeps_constants

    def propagate(self, walk, layer, node, inputs):
        (source,) = inputs
        if self.activation:
            constant = values_through(elementwise_function(layer), source.constant)
            return [Channels(source.labels, constant == 0, constant)]
        return [Channels(source.labels, source.zero, source.constant if self.keeps_constants else None)]


class Merge(Rule):
    """Element-wise merges: the channels of all inputs are tied index by index."""

    def __init__(self, zero_if_any):
        self.zero_if_any = zero_if_any  # Multiply: one zero factor suffices

    def unsupported(self, layer, node):
        arguments = keras.tree.flatten((node.arguments.args, node.arguments.kwargs))
        constants = [a for a in arguments if not isinstance(a, keras.KerasTensor)]
        if any(np.ndim(c) > 0 for c in constants):
            return "it applies a constant array, which cannot be sliced"
        return None

    def propagate(self, walk, layer, node, inputs):
        first = inputs[0]
        if any(len(source.labels) != len(first.labels) for source in inputs):
            return Boundary().propagate(walk, layer, node, inputs)  # broadcasting a channel: keep them
        for source in inputs[1:]:
            walk.join(first.labels, source.labels)
        zeros = np.stack([source.zero for source in inputs])
        if len(inputs) == 1 and not self.zero_if_any:  # `x + constant`
            zeros = np.zeros_like(zeros)
        return [Channels(first.labels, zeros.any(axis=0) if self.zero_if_any else zeros.all(axis=0))]


class Concatenate(Rule):
    def propagate(self, walk, layer, node, inputs):
        rank = len(node.output_tensors[0].shape)
        if layer.axis not in (-1, rank - 1):
            return Merge(zero_if_any=False).propagate(walk, layer, node, inputs)
        return [Channels(*(np.concatenate([getattr(s, field) for s in inputs]) for field in ("labels", "zero",
                                                                                          "constant")))]


class Reshape(Rule):
    """Flatten and Reshape that keep channels-last order: `k` positions per channel become `k` features.

    A Conv's (H, W, C) output flattened for a Dense gives feature (h * W + w) * C + c,
    so each channel's label repeats every C features.
    """

    def _repeats(self, node):
        in_shape, out_shape = node.input_tensors[0].shape[1:], node.output_tensors[0].shape[1:]
        if None in in_shape or None in out_shape or not in_shape or not out_shape:
            return None
        channels = in_shape[-1]
        if out_shape[-1] % channels:
            return None
        repeats = out_shape[-1] // channels
        order = np.broadcast_to(np.arange(channels), in_shape).reshape(-1, out_shape[-1])
        return repeats if (order == np.tile(np.arange(channels), repeats)).all() else None

    def unsupported(self, layer, node):
        if self._repeats(node) is None:
            return "it does not keep channels last"
        return None

    def propagate(self, walk, layer, node, inputs):
        (source,) = inputs
        walk.bind(layer, "input", source.labels)
        repeats = self._repeats(node)
        return [Channels(*(np.tile(getattr(source, field), repeats) for field in ("labels", "zero", "constant")))]

    def shrink(self, layer, keep):
        if isinstance(layer, L.Flatten) or keep["input"].all():
            return None
        config = layer.get_config()
        target = list(config["target_shape"])
        if target[-1] != -1:
            target[-1] = target[-1] // len(keep["input"]) * int(keep["input"].sum())
        config["target_shape"] = tuple(target)
        return config, []


class Permute(Rule):
    def unsupported(self, layer, node):
        return None if layer.dims[-1] == len(layer.dims) else "it moves the channel axis"

    def propagate(self, walk, layer, node, inputs):
        return PassThrough().propagate(walk, layer, node, inputs)


def _unsupported_variant(layer):
    """Why a weighted layer is a variant the slicing rules do not cover, or None."""
    if getattr(layer, "quantization_mode", None) or getattr(layer, "lora_enabled", False):
        return "it is quantized or LoRA-enabled"
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        return "it is channels_first"
    return None


def is_depthwise_conv(layer):
    """True for a Conv with one input channel per group (ConvNeXt's depthwise `Conv2D(groups=channels)`)."""
    return getattr(layer, "groups", 1) > 1 and layer.built and layer.kernel.shape[-2] == 1


class Producer(Rule):
    """Dense, Conv and ConvTranspose: input channels are kernel rows, output channels are new.

    `folds`: an input channel that holds one constant c may go, c times its kernel entries moving into the bias
    (Dense; Conv where no output position sees zero padding: a 1x1 kernel or "valid" padding).
    """

    def __init__(self, size_key, input_axis, output_axis, folds=False):
        self.size_key, self.input_axis, self.output_axis, self.folds = size_key, input_axis, output_axis, folds

    def unsupported(self, layer, node):
        reason = _unsupported_variant(layer)
        if reason:
            return reason
        if getattr(layer, "groups", 1) != 1:
            return "it is a grouped convolution with several input channels per group"
        if self.input_axis is not None:
            rows = weights_by_name(layer)["kernel"].shape[self.input_axis]
            if channel_count(node.input_tensors[0]) != rows:
                return "its input channels do not match its kernel"
        return None

    def propagate(self, walk, layer, node, inputs):
        weights = walk.weights(layer)
        kernel = weights[self._kernel_name]
        input_zero = None
        if self.input_axis is None:
            for source in inputs:
                walk.freeze(source)  # token ids, not channels
        else:
            source = inputs[0]
            walk.bind(layer, "input", source.labels)
            walk.sink(layer, source, folds=self._folds_at(layer))
            input_zero = source.zero
        labels = walk.own(layer, "output", kernel.shape[self.output_axis])
        dead = _dead_outputs(kernel, input_zero, self.input_axis, self.output_axis) if self.input_axis is not None \
            else ~np.any(kernel != 0, axis=0)
        return [_outputs(labels, dead, weights, layer)]

    def _folds_at(self, layer):
        """True if this layer's bias can take its constant inputs: every output position sees all kernel entries."""
        return self.folds and (getattr(layer, "padding", "valid") == "valid"
                               or all(size == 1 for size in getattr(layer, "kernel_size", ())))

    @property
    def _kernel_name(self):
        return "embeddings" if self.input_axis is None else "kernel"

    def axes(self, layer):
        kernel = _variable(layer, self._kernel_name)
        found = [RoleAxis("output", kernel, _axis(kernel, self.output_axis))]
        if getattr(layer, "use_bias", False):
            found.append(RoleAxis("output", _variable(layer, "bias"), 0))
        if self.input_axis is not None:
            found.append(RoleAxis("input", kernel, _axis(kernel, self.input_axis), masked=False))
        return found

    def shrink(self, layer, keep, constants=None):
        """`constants`: the value of each input channel where it is one, if removed ones are not all zero."""
        config = layer.get_config()
        config[self.size_key] = int(keep["output"].sum())
        names, values = [v.name for v in layer.weights], [host_value(v) for v in layer.weights]
        if constants is not None:
            folded = self._folded(values[names.index("kernel")], constants, ~keep["input"])
            if "bias" not in names:  # the layer gets a bias (built after its kernel), holding what they added
                config["use_bias"] = True
                names, values = names + ["bias"], values + [np.zeros_like(folded)]
            values[names.index("bias")] = values[names.index("bias")] + folded
        return config, [self._sliced(name, value, keep) for name, value in zip(names, values)]

    def _sliced(self, name, value, keep):
        if name == self._kernel_name:
            if self.input_axis is not None:
                value = _take(value, keep["input"], self.input_axis)
            return _take(value, keep["output"], self.output_axis)
        return _take(value, keep["output"], 0) if name == "bias" else value

    def _folded(self, kernel, constants, removed):
        """What the `removed` input channels, each holding its constant everywhere, add to every output."""
        rows = np.moveaxis(kernel, (self.input_axis, self.output_axis), (-2, -1))[..., removed, :]
        return (constants[removed] @ rows.reshape(-1, *rows.shape[-2:]).sum(axis=0)).astype(kernel.dtype)


class Depthwise(Rule):
    """DepthwiseConv: input channel c becomes outputs c*m .. c*m+m-1 (m, the depth multiplier)."""

    def unsupported(self, layer, node):
        return _unsupported_variant(layer)

    def per_channel(self, layer, kernel):
        """The kernel as (..., channels, multiplier)."""
        return kernel

    def stored(self, layer, kernel):
        """The inverse of `per_channel`: the kernel as the layer holds it."""
        return kernel

    def config(self, layer, kept):
        return layer.get_config()

    def propagate(self, walk, layer, node, inputs):
        (source,) = inputs
        weights = walk.weights(layer)
        kernel = self.per_channel(layer, weights["kernel"])
        multiplier = kernel.shape[-1]
        walk.bind(layer, "input", source.labels)
        dead = ~np.any(kernel != 0, axis=tuple(range(kernel.ndim - 2))).reshape(-1)
        return [_outputs(np.repeat(source.labels, multiplier), np.repeat(source.zero, multiplier) | dead, weights,
                         layer)]

    def shrink(self, layer, keep):
        if keep["input"].all():
            return None
        values = weights_by_name(layer)
        weights = [self.stored(layer, _take(self.per_channel(layer, values["kernel"]), keep["input"], -2))]
        if "bias" in values:
            weights.append(values["bias"].reshape(len(keep["input"]), -1)[keep["input"]].reshape(-1))
        return self.config(layer, int(keep["input"].sum())), weights

    def kernel_axis(self, layer):
        """(axis, entries per channel) of the kernel along its input channels."""
        return len(layer.kernel.shape) - 2, 1

    def axes(self, layer):
        kernel = _variable(layer, "kernel")
        found = [RoleAxis("input", kernel, *self.kernel_axis(layer))]
        if layer.use_bias:
            bias = _variable(layer, "bias")
            found.append(RoleAxis("input", bias, 0, repeat=bias.shape[0] // found[0].size))  # the multiplier
        return found


class GroupedDepthwise(Depthwise):
    """A Conv with one input channel per group, a DepthwiseConv in disguise: its kernel (..., 1, channels * m)
    holds input channel c's m filters at outputs c*m .. c*m+m-1. A channel goes with its group."""

    def per_channel(self, layer, kernel):
        return kernel.reshape(*kernel.shape[:-2], -1, layer.filters // layer.groups)

    def stored(self, layer, kernel):
        return kernel.reshape(*kernel.shape[:-2], 1, -1)

    def config(self, layer, kept):
        config = layer.get_config()
        config["filters"], config["groups"] = layer.filters // layer.groups * kept, kept
        return config

    def kernel_axis(self, layer):
        return len(layer.kernel.shape) - 1, layer.filters // layer.groups


class Separable(Rule):
    """SeparableConv: a depthwise step (channels pass through) then a pointwise Producer."""

    def unsupported(self, layer, node):
        return _unsupported_variant(layer)

    def propagate(self, walk, layer, node, inputs):
        (source,) = inputs
        weights = walk.weights(layer)
        depthwise, pointwise = weights["depthwise_kernel"], weights["pointwise_kernel"]
        multiplier = depthwise.shape[-1]
        walk.bind(layer, "input", source.labels)
        dead = ~np.any(depthwise != 0, axis=tuple(range(depthwise.ndim - 2))).reshape(-1)
        middle = Channels(np.repeat(source.labels, multiplier), np.repeat(source.zero, multiplier) | dead)
        walk.sink(layer, middle)
        dead = _dead_outputs(pointwise, middle.zero, -2, -1)
        return [_outputs(walk.own(layer, "output", pointwise.shape[-1]), dead, weights, layer)]

    def shrink(self, layer, keep):
        values = weights_by_name(layer)
        multiplier = values["depthwise_kernel"].shape[-1]
        config = layer.get_config()
        config["filters"] = int(keep["output"].sum())
        weights = [
            _take(values["depthwise_kernel"], keep["input"], -2),
            _take(_take(values["pointwise_kernel"], np.repeat(keep["input"], multiplier), -2), keep["output"], -1),
        ]
        if "bias" in values:
            weights.append(values["bias"][keep["output"]])
        return config, weights

    def axes(self, layer):
        depthwise, pointwise = _variable(layer, "depthwise_kernel"), _variable(layer, "pointwise_kernel")
        found = [RoleAxis("output", pointwise, len(pointwise.shape) - 1)]
        if layer.use_bias:
            found.append(RoleAxis("output", _variable(layer, "bias"), 0))
        return found + [RoleAxis("input", depthwise, len(depthwise.shape) - 2, masked=False),
                        RoleAxis("input", pointwise, len(pointwise.shape) - 2, repeat=depthwise.shape[-1],
                                 masked=False)]


def _normalization_axes(layer):
    return [RoleAxis("channel", v, 0) for v in layer.weights if v.name in ("gamma", "beta")]


def _is_channel_axis(axis, node):
    rank = len(node.input_tensors[0].shape)
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    return [a % rank for a in axes] == [rank - 1]


class BatchNormalization(Rule):
    """Per-channel scale and offset: gamma, beta and the moving statistics follow the channel."""

    def unsupported(self, layer, node):
        return None if _is_channel_axis(layer.axis, node) else "it normalizes another axis than the last"

    def propagate(self, walk, layer, node, inputs):
        (source,) = inputs
        walk.bind(layer, "channel", source.labels)
        values = walk.weights(layer)
        size = len(source.labels)
        gamma, beta = values.get("gamma", np.ones(size)), values.get("beta", np.zeros(size))
        mean = values["moving_mean"]
        # y = gamma * (x - mean) / sqrt(var + eps) + beta: zero if gamma and beta are, or if x, mean and beta are.
        zero = ((gamma == 0) & (beta == 0)) | (source.zero & (beta == 0) & ((mean == 0) | (gamma == 0)))
        return [Channels(source.labels, zero)]

    def shrink(self, layer, keep):
        if keep["channel"].all():
            return None
        return layer.get_config(), [_take(host_value(v), keep["channel"], 0) for v in layer.weights]

    def axes(self, layer):
        return _normalization_axes(layer)


class GroupNormalization(Rule):
    """Channels normalized together are one group: they are removed whole, and `groups` shrinks."""

    def unsupported(self, layer, node):
        return None if _is_channel_axis(layer.axis, node) else "it normalizes another axis than the last"

    def propagate(self, walk, layer, node, inputs):
        (source,) = inputs
        by_group = source.labels.reshape(layer.groups, -1)
        for column in range(1, by_group.shape[1]):
            walk.join(by_group[:, 0], by_group[:, column])
        walk.bind(layer, "channel", source.labels)
        values = walk.weights(layer)
        size = len(source.labels)
        gamma, beta = values.get("gamma", np.ones(size)), values.get("beta", np.zeros(size))
        group_zero = np.repeat(source.zero.reshape(layer.groups, -1).all(axis=1), by_group.shape[1])
        return [Channels(source.labels, (beta == 0) & ((gamma == 0) | group_zero))]

    def shrink(self, layer, keep):
        if keep["channel"].all():
            return None
        config = layer.get_config()
        config["groups"] = int(keep["channel"].sum()) // (len(keep["channel"]) // layer.groups)
        return config, [_take(host_value(v), keep["channel"], 0) for v in layer.weights]

    def axes(self, layer):
        return _normalization_axes(layer)


class PReLU(Rule):
    def propagate(self, walk, layer, node, inputs):
        (source,) = inputs
        if weights_by_name(layer)["alpha"].shape[-1] == len(source.labels) > 1:
            walk.bind(layer, "channel", source.labels)
        return [Channels(source.labels, source.zero)]

    def shrink(self, layer, keep):
        if "channel" not in keep or keep["channel"].all():
            return None
        return layer.get_config(), [_take(weights_by_name(layer)["alpha"], keep["channel"], -1)]

    def axes(self, layer):
        alpha = _variable(layer, "alpha")
        return [RoleAxis("channel", alpha, len(alpha.shape) - 1, masked=False)] if alpha.shape[-1] > 1 else []


class MultiHeadAttention(Rule):
    """Whole heads go: a head's query/key/value columns and its rows of the output projection.

    A head contributes nothing when its value projection or its output rows are zero.
    The query, key and value inputs are consumed as kernel rows; the output features are new.
    """

    _PROJECTIONS = ("query", "key", "value")

    def unsupported(self, layer, node):
        if compat.attention_is_gated(layer):
            return "it uses gated attention"
        if len(np.atleast_1d(compat.attention_output_shape(layer) or 0)) != 1:
            return "its output_shape has more than one axis"
        return None

    def _sources(self, walk, node):
        args, kwargs = node.arguments.args, node.arguments.kwargs
        query = args[0] if args else kwargs["query"]
        value = args[1] if len(args) > 1 else kwargs["value"]
        key = args[2] if len(args) > 2 else kwargs.get("key")
        return {"query": query, "value": value, "key": value if key is None else key}

    def _dense(self, layer):
        return compat.attention_projections(layer)

    def propagate(self, walk, layer, node, inputs):
        dense = {role: walk.weights(sub) for role, sub in self._dense(layer).items()}
        used = set()
        for role, tensor in self._sources(walk, node).items():
            source = walk.channels(tensor)
            used.add(id(tensor))
            walk.bind(layer, role, source.labels)
            walk.sink(layer, source)
        for tensor, source in zip(node.input_tensors, inputs):
            if id(tensor) not in used:
                walk.freeze(source)  # attention masks
        value_source = walk.channels(self._sources(walk, node)["value"])
        value_kernel = dense["value"]["kernel"][~value_source.zero]  # (dim, heads, head_dim)
        value_dead = ~np.any(value_kernel != 0, axis=(0, 2))
        if "bias" in dense["value"]:
            value_dead &= ~np.any(dense["value"]["bias"] != 0, axis=1)
        output_kernel = dense["output"]["kernel"]  # (heads, head_dim, features)
        heads = walk.own(layer, "heads", output_kernel.shape[0])
        head_zero = value_dead | ~np.any(output_kernel != 0, axis=(1, 2))
        walk.sink(layer, Channels(heads, head_zero))
        zero = ~np.any(output_kernel[~head_zero] != 0, axis=(0, 1))
        if "bias" in dense["output"]:
            zero &= dense["output"]["bias"] == 0
        outputs = [Channels(walk.own(layer, "output", output_kernel.shape[-1]), zero)]
        return outputs + [walk.frozen(channel_count(t)) for t in node.output_tensors[1:]]  # attention scores

    def shrink(self, layer, keep):
        config = layer.get_config()
        config["num_heads"] = int(keep["heads"].sum())
        config["output_shape"] = int(keep["output"].sum())
        weights = []
        for role, sub in self._dense(layer).items():
            values = weights_by_name(sub)
            if role == "output":
                weights.append(_take(_take(values["kernel"], keep["heads"], 0), keep["output"], 2))
                if "bias" in values:
                    weights.append(values["bias"][keep["output"]])
            else:
                weights.append(_take(_take(values["kernel"], keep[role], 0), keep["heads"], 1))
                if "bias" in values:
                    weights.append(_take(values["bias"], keep["heads"], 0))
        return config, weights

    def axes(self, layer):
        found = []
        for role, sub in self._dense(layer).items():
            kernel = _variable(sub, "kernel")
            bias = [_variable(sub, "bias")] if compat.attention_uses_bias(layer) else []
            if role == "output":  # zeroing a head's rows of the output projection removes its contribution
                found += [RoleAxis("heads", kernel, 0), RoleAxis("output", kernel, 2)]
                found += [RoleAxis("output", b, 0) for b in bias]
            else:
                found += [RoleAxis(role, kernel, 0, masked=False), RoleAxis("heads", kernel, 1, masked=False)]
                found += [RoleAxis("heads", b, 0, masked=False) for b in bias]
        return found


class RecurrentInput(Rule):
    """SimpleRNN, LSTM, GRU (and Bidirectional ones): input channels are kernel rows; units are kept."""

    def propagate(self, walk, layer, node, inputs):
        source = inputs[0]
        walk.bind(layer, "input", source.labels)
        walk.sink(layer, source)
        for other in inputs[1:]:
            walk.freeze(other)  # initial states
        return [walk.frozen(channel_count(t)) for t in node.output_tensors]

    def shrink(self, layer, keep):
        if keep["input"].all():
            return None
        weights = [host_value(v) for v in layer.weights]
        weights = [_take(w, keep["input"], 0) if v.name == "kernel" else w for v, w in zip(layer.weights, weights)]
        return layer.get_config(), weights

    def axes(self, layer):
        return [RoleAxis("input", v, 0, masked=False) for v in layer.weights if v.name == "kernel"]
