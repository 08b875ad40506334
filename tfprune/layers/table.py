"""The one table of what tfprune knows about each kind of layer.

A `LayerKind` says, for one family of layers, which weights magnitude pruning masks
(and what their axes mean), how channels flow through it and how it is rebuilt
smaller (its channel `Rule`), and how many FLOPs a call costs. Magnitude pruning
(`registry`), channel pruning (`rule_by_class`) and `model_cost` all read it here.
`register_layer` adds your own classes.

Example:

>>> kind_of(keras.layers.Conv2D(8, 3)).weights[0][0]
'kernel'
"""

import dataclasses

import keras
import numpy as np
from keras import layers as L

from tfprune.graph import compat
from tfprune.layers import flops
from tfprune.layers.weights import depthwise_axes, einsum_axes, kernel_axes, transposed_kernel_axes
from tfprune.structured import rules


@dataclasses.dataclass(frozen=True)
class LayerKind:
    """What tfprune knows about one family of layers.

    Attributes:
        classes: the layer classes (subclasses included), or (module root, class name) pairs for
            libraries tfprune does not import (keras-hub).
        weights: `(attribute, axes function)` of each weight magnitude pruning masks; `()` for a layer
            with nothing to prune (normalization, weightless layers); None if it is not known.
        channels: the channel `Rule` (how channels flow through the layer and how it loses them);
            None keeps its channels whole.
        kept_because: why channel pruning keeps its channels on purpose, if it does.
        flops: FLOPs of one call, from its traced shapes (`tfprune.layers.flops`); None: not counted.
    """

    classes: tuple
    weights: tuple = None
    channels: rules.Rule = None
    kept_because: str = None
    flops: object = None


def _is_instance(layer, cls):
    if isinstance(cls, type):
        return isinstance(layer, cls)
    return any((base.__module__.split(".")[0], base.__name__) == cls for base in type(layer).__mro__)


_KERNEL = (("kernel", kernel_axes),)
_NOTHING = ()

_KINDS = [
    LayerKind((L.Dense,), _KERNEL, rules.Producer("units", 0, 1, folds=True), flops=flops.per_output_position),
    LayerKind((L.EinsumDense,), (("kernel", einsum_axes),), flops=flops.einsum),
    LayerKind((L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose), (("kernel", transposed_kernel_axes),),
              rules.Producer("filters", -1, -2), flops=flops.per_input_position),
    LayerKind((L.DepthwiseConv1D, L.DepthwiseConv2D), (("kernel", depthwise_axes),), rules.Depthwise(),
              flops=flops.per_output_position),
    LayerKind((L.SeparableConv1D, L.SeparableConv2D),
              (("depthwise_kernel", depthwise_axes), ("pointwise_kernel", kernel_axes)), rules.Separable(),
              flops=flops.separable),
    LayerKind((L.Conv1D, L.Conv2D, L.Conv3D), _KERNEL, rules.Producer("filters", -2, -1, folds=True),
              flops=flops.per_output_position),
    LayerKind((L.Embedding,), (("embeddings", kernel_axes),), rules.Producer("output_dim", None, 1)),
    LayerKind((("keras_hub", "PositionEmbedding"),), (("position_embeddings", kernel_axes),)),
    LayerKind((L.SimpleRNNCell, L.LSTMCell, L.GRUCell), (("kernel", kernel_axes), ("recurrent_kernel", kernel_axes))),
    LayerKind((L.SimpleRNN, L.LSTM, L.GRU), channels=rules.RecurrentInput()),  # weights: those of their cells
    LayerKind((L.MultiHeadAttention,), channels=rules.MultiHeadAttention(), flops=flops.attention),
    LayerKind((L.BatchNormalization,), _NOTHING, rules.BatchNormalization()),
    LayerKind((L.GroupNormalization,), _NOTHING, rules.GroupNormalization()),
    LayerKind((L.PReLU,), channels=rules.PReLU()),
    LayerKind((L.LayerNormalization, L.UnitNormalization, L.Softmax), _NOTHING,
              kept_because="it normalizes across channels"),
    LayerKind((L.Normalization, L.Rescaling), _NOTHING, kept_because="it is a preprocessing layer"),
    LayerKind((L.InputLayer,), _NOTHING, kept_because="it is an input"),
    LayerKind((L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D, L.GaussianDropout,
               L.GaussianNoise, L.AlphaDropout, L.ActivityRegularization, L.Identity,
               L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D, L.MaxPooling1D, L.MaxPooling2D,
               L.MaxPooling3D, L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D,
               L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D,
               L.Cropping1D, L.Cropping2D, L.Cropping3D,
               L.UpSampling1D, L.UpSampling2D, L.UpSampling3D), _NOTHING, rules.PassThrough()),
    LayerKind((L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D, L.Masking), _NOTHING,
              rules.PassThrough(keeps_constants=False)),
    LayerKind((L.Activation, L.ReLU, L.LeakyReLU, L.ELU), _NOTHING, rules.PassThrough(activation=True)),
    LayerKind((L.Add, L.Subtract, L.Average, L.Maximum, L.Minimum), _NOTHING, rules.Merge(zero_if_any=False)),
    LayerKind((L.Multiply,), _NOTHING, rules.Merge(zero_if_any=True)),
    LayerKind((L.Concatenate,), _NOTHING, rules.Concatenate()),
    LayerKind((L.Flatten, L.Reshape), _NOTHING, rules.Reshape()),
    LayerKind((L.Permute,), _NOTHING, rules.Permute()),
    LayerKind((L.Dot, L.RepeatVector, L.Lambda), _NOTHING),
]

# Operations written as expressions (`x + y`, `keras.ops.relu(x)`) rather than layers.
_numpy_ops, _nn_ops = compat.numpy_ops, compat.nn_ops
_OPERATIONS = [
    LayerKind((_numpy_ops.Add, _numpy_ops.Subtract, _numpy_ops.Maximum, _numpy_ops.Minimum),
              channels=rules.Merge(zero_if_any=False)),
    LayerKind((_numpy_ops.Multiply,), channels=rules.Merge(zero_if_any=True)),
    LayerKind(tuple(getattr(_nn_ops, name) for name in ("Relu", "Relu6", "Silu", "Gelu", "LeakyRelu", "Elu", "Selu",
                                                        "Sigmoid", "HardSigmoid", "HardSilu", "Softplus",
                                                        "Softsign", "Tanh") if hasattr(_nn_ops, name)),
              channels=rules.PassThrough(activation=True)),
]

_REGISTERED = []


def register_layer(cls, like):
    """Lets tfprune treat your layer class `cls` as the Keras layer class `like` in every respect:
    the weights magnitude pruning masks, channel pruning and `shrink`, and FLOPs.

    For your subclass of a Keras layer whose `call` uses the weights as the Keras layer does
    (tfprune does not assume so: a subclass may standardize its kernel, for one).

    Example:

    ```python
    @keras.saving.register_keras_serializable()
    class LoggingDense(keras.layers.Dense):
        def call(self, x):
            return super().call(x)

    tfprune.register_layer(LoggingDense, like=keras.layers.Dense)
    ```
    """
    if not (isinstance(cls, type) and issubclass(cls, keras.layers.Layer)):
        raise ValueError(f"register_layer takes a Keras layer class, got {cls!r}.")
    kind = _kind_among(_KINDS, like) if isinstance(like, type) and issubclass(like, keras.layers.Layer) else None
    if kind is None or not issubclass(cls, like):
        raise ValueError(
            f"register_layer({cls.__name__}, like={getattr(like, '__name__', like)!r}): `like` must be a Keras "
            f"layer class that tfprune knows and that {cls.__name__} subclasses, e.g. like=keras.layers.Dense."
        )
    _REGISTERED.insert(0, dataclasses.replace(kind, classes=(cls,)))


def _kind_among(kinds, layer_or_class):
    for kind in kinds:
        if any(_is_instance_or_subclass(layer_or_class, cls) for cls in kind.classes):
            return kind
    return None


def _is_instance_or_subclass(layer_or_class, cls):
    if isinstance(layer_or_class, type):
        return isinstance(cls, type) and issubclass(layer_or_class, cls)
    return _is_instance(layer_or_class, cls)


def is_registered(layer):
    """True if `layer` is of a class given to `register_layer`."""
    return _kind_among(_REGISTERED, layer) is not None


def kind_of(operation):
    """The `LayerKind` of a layer or graph operation (the first that matches, yours first), or None."""
    kinds = _REGISTERED + _KINDS if isinstance(operation, keras.layers.Layer) else _OPERATIONS
    return _kind_among(kinds, operation)


def counted_by_flops(layer):
    """True for layers whose calls `model_cost` counts."""
    kind = kind_of(layer)
    return kind is not None and kind.flops is not None


# -- channel pruning's view ----------------------------------------------------------------------

def rule_by_class(operation):
    """(rule, reason_kept, expected) from the operation's type alone; `reason_kept` None if a rule follows it."""
    recurrent = (L.SimpleRNN, L.LSTM, L.GRU)
    if isinstance(operation, recurrent) or (
            isinstance(operation, L.Bidirectional) and isinstance(operation.forward_layer, recurrent)):
        cells = operation.forward_layer.cell if isinstance(operation, L.Bidirectional) else operation.cell
        if not isinstance(cells, L.StackedRNNCells):
            return rules.RecurrentInput(), None, True
    kind = kind_of(operation)
    if kind is not None and kind.kept_because:
        return rules.Boundary(), kind.kept_because, True
    if (isinstance(operation, L.Layer) and type(operation).__module__.split(".")[0] != "keras"
            and not is_registered(operation)):
        return rules.Boundary(), "it is not a Keras built-in layer", False  # a user's subclass may change call()
    if isinstance(operation, (L.Conv1D, L.Conv2D, L.Conv3D)) and rules.is_depthwise_conv(operation):
        return rules.GroupedDepthwise(), None, True
    if kind is not None and kind.channels is not None:
        return kind.channels, None, True
    return rules.Boundary(), "the channel analysis does not know it", False


def rule_for(operation, node):
    """(rule, reason_kept, expected) for an operation called at `node`: `reason_kept` is None if followed.

    `expected` is False for layers the analysis does not understand (worth a warning).
    """
    rule, reason, expected = rule_by_class(operation)
    if reason is None:
        reason = rule.unsupported(operation, node)
        if reason:
            return rules.Boundary(), reason, False
    return rule, reason, expected


def why_nonzero(operation):
    """Why `operation` turns a zero channel into a non-zero one, for messages (e.g. "sigmoid(0) = 0.5")."""
    if isinstance(operation, (L.BatchNormalization, L.GroupNormalization)):
        return "its offset beta, or its moving mean, is non-zero"
    if isinstance(rule_by_class(operation)[0], rules.Merge):
        return "it adds a constant"
    function = getattr(operation, "activation", None) or rules.elementwise_function(operation)
    name = getattr(function, "__name__", type(operation).__name__)
    value = rules.values_through(function, [0.0])[0]
    return f"{name} mixes channels" if np.isnan(value) else f"{name}(0) = {value:g}"


def masked_roles(layer):
    """The roles of `layer` whose channels channel pruning masks (it has a weight to zero along them)."""
    return {axis.role for axis in rule_by_class(layer)[0].axes(layer) if axis.masked}
