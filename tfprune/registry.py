"""Which weights of which layer are prunable: the single source of truth.

Built-in layers are listed here; a custom layer opts in by inheriting
`PrunableLayer` and returning its prunable variables from `get_prunable_weights()`.
Biases are never pruned. Layers without weights pass through untouched.
"""

import abc
import dataclasses

import keras
from keras import layers as L

from tfprune.axes import WeightAxes
from tfprune.graph import compat


class PrunableLayer(metaclass=abc.ABCMeta):
    """Mixin for custom layers that tfprune should prune.

    Example:

    ```python
    class MyDense(keras.layers.Layer, tfprune.PrunableLayer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], 8))

        def call(self, x):
            return x @ self.w

        def get_prunable_weights(self):
            return [self.w]
    ```
    """

    @abc.abstractmethod
    def get_prunable_weights(self):
        """Returns the list of `keras.Variable`s to prune."""


@dataclasses.dataclass(frozen=True)
class PrunableWeight:
    """A prunable variable of a layer and the meaning of its axes."""

    variable: keras.Variable
    axes: WeightAxes


def _kernel_axes(layer, variable):
    return WeightAxes.of_shape(variable.shape)


def _transposed_kernel_axes(layer, variable):
    return WeightAxes.of_shape(variable.shape, transposed=True)


def _depthwise_axes(layer, variable):
    rank = len(variable.shape)
    return WeightAxes(depthwise=rank - 2, output=(rank - 1,))


def _einsum_axes(layer, variable):
    """Kernel axes from the equation: letters shared with the output are output axes, the rest input."""
    inputs, outputs = layer.equation.split("->")
    _, kernel = inputs.split(",")
    if "." in kernel:
        return WeightAxes.of_shape(variable.shape)
    output_axes = tuple(i for i, letter in enumerate(kernel) if letter in outputs)
    input_axes = tuple(i for i, letter in enumerate(kernel) if letter not in outputs)
    return WeightAxes(input=input_axes, output=output_axes)


# Layer classes -> (prunable weight attribute, axes of that weight).
_WEIGHTS_BY_CLASS = (
    (L.Dense, (("kernel", _kernel_axes),)),
    (L.EinsumDense, (("kernel", _einsum_axes),)),
    (L.Conv1DTranspose, (("kernel", _transposed_kernel_axes),)),
    (L.Conv2DTranspose, (("kernel", _transposed_kernel_axes),)),
    (L.Conv3DTranspose, (("kernel", _transposed_kernel_axes),)),
    (L.DepthwiseConv1D, (("kernel", _depthwise_axes),)),
    (L.DepthwiseConv2D, (("kernel", _depthwise_axes),)),
    (L.SeparableConv1D, (("depthwise_kernel", _depthwise_axes), ("pointwise_kernel", _kernel_axes))),
    (L.SeparableConv2D, (("depthwise_kernel", _depthwise_axes), ("pointwise_kernel", _kernel_axes))),
    (L.Conv1D, (("kernel", _kernel_axes),)),
    (L.Conv2D, (("kernel", _kernel_axes),)),
    (L.Conv3D, (("kernel", _kernel_axes),)),
    (L.Embedding, (("embeddings", _kernel_axes),)),
    (L.SimpleRNNCell, (("kernel", _kernel_axes), ("recurrent_kernel", _kernel_axes))),
    (L.LSTMCell, (("kernel", _kernel_axes), ("recurrent_kernel", _kernel_axes))),
    (L.GRUCell, (("kernel", _kernel_axes), ("recurrent_kernel", _kernel_axes))),
)

# Layers of libraries that tfprune does not depend on, by module root and class name (no import needed).
_WEIGHTS_BY_CLASS_NAME = {
    ("keras_hub", "PositionEmbedding"): (("position_embeddings", _kernel_axes),),
}

# Layers with nothing to prune: normalization (deliberately dense) and weightless layers.
# Weightless ones are recognised once built (no weights); these are known before build too.
_DENSE_BY_DESIGN = (
    L.BatchNormalization,
    L.LayerNormalization,
    L.GroupNormalization,
    L.UnitNormalization,
    L.Normalization,
    L.InputLayer,
    L.Activation,
    L.ReLU,
    L.LeakyReLU,
    L.ELU,
    L.Softmax,
    L.Dropout,
    L.SpatialDropout1D,
    L.SpatialDropout2D,
    L.SpatialDropout3D,
    L.GaussianDropout,
    L.GaussianNoise,
    L.AlphaDropout,
    L.ActivityRegularization,
    L.Flatten,
    L.Reshape,
    L.Permute,
    L.RepeatVector,
    L.Masking,
    L.Lambda,
    L.Rescaling,
    L.Cropping1D,
    L.Cropping2D,
    L.Cropping3D,
    L.ZeroPadding1D,
    L.ZeroPadding2D,
    L.ZeroPadding3D,
    L.UpSampling1D,
    L.UpSampling2D,
    L.UpSampling3D,
    L.Add,
    L.Subtract,
    L.Multiply,
    L.Average,
    L.Maximum,
    L.Minimum,
    L.Concatenate,
    L.Dot,
    L.AveragePooling1D,
    L.AveragePooling2D,
    L.AveragePooling3D,
    L.MaxPooling1D,
    L.MaxPooling2D,
    L.MaxPooling3D,
    L.GlobalAveragePooling1D,
    L.GlobalAveragePooling2D,
    L.GlobalAveragePooling3D,
    L.GlobalMaxPooling1D,
    L.GlobalMaxPooling2D,
    L.GlobalMaxPooling3D,
)


def _rnn_cells(layer):
    cells = layer.cell.cells if isinstance(layer.cell, L.StackedRNNCells) else [layer.cell]
    if all(has_custom_prunable_weights(c) or _weights_by_class(c) for c in cells):
        return list(cells)
    return None


_LIBRARIES = ("keras", "keras_hub", "keras_nlp", "keras_cv", "tfprune")


def _from_a_library(layer):
    """False for a user's own class: a `class MyDense(Dense)` may use its `kernel` differently in `call`
    (weight standardization, for one), so it is pruned only if it names its weights, as in tfmot."""
    return type(layer).__module__.split(".")[0] in _LIBRARIES


def _sublayers(layer):
    """Inner layers whose weights belong to a container layer, or None."""
    if not _from_a_library(layer):
        return None
    if isinstance(layer, L.MultiHeadAttention):
        return list(compat.attention_projections(layer).values())
    if isinstance(layer, L.Bidirectional):
        return [layer.forward_layer, layer.backward_layer]
    if isinstance(layer, L.TimeDistributed):
        return [layer.layer]
    if isinstance(layer, L.RNN):
        return _rnn_cells(layer)
    return None


def _weights_by_class(layer):
    if not _from_a_library(layer):
        return ()
    for cls, weights in _WEIGHTS_BY_CLASS:
        if isinstance(layer, cls):
            return weights
    for cls in type(layer).__mro__:
        weights = _WEIGHTS_BY_CLASS_NAME.get((cls.__module__.split(".")[0], cls.__name__))
        if weights:
            return weights
    return ()


def has_custom_prunable_weights(layer):
    """True for layers that list their own prunable weights: `PrunableLayer`s, or any layer with a
    `get_prunable_weights()` method (tfmot accepts both)."""
    return isinstance(layer, PrunableLayer) or callable(getattr(layer, "get_prunable_weights", None))


def is_prunable(layer):
    """True if tfprune knows which weights of `layer` to prune (decided by type, before build)."""
    if has_custom_prunable_weights(layer):
        return True
    if isinstance(layer, (L.Bidirectional, L.TimeDistributed)):
        return is_prunable(layer.forward_layer if isinstance(layer, L.Bidirectional) else layer.layer)
    if _sublayers(layer) is not None:
        return True
    return bool(_weights_by_class(layer))


def is_dense_by_design(layer):
    """True for layers with nothing to prune: no weights, or normalization layers."""
    return isinstance(layer, _DENSE_BY_DESIGN) or (layer.built and not layer.weights)


def is_supported(layer):
    """True for layers a `PruneLowMagnitude` may wrap: prunable ones, and those with nothing to prune."""
    return is_prunable(layer) or is_dense_by_design(layer)


def unsupported_message(layer):
    """Why `layer` cannot be wrapped for pruning, and what to do about it."""
    base = next((cls.__name__ for cls, _ in _WEIGHTS_BY_CLASS if isinstance(layer, cls)), None)
    if base:
        return (
            f"Layer '{layer.name}' ({type(layer).__name__}) subclasses {base}, but its call may use the weights "
            f"differently, so tfprune (like tfmot) does not prune it as a {base}. If it does use them as {base} "
            "does, add tfprune.PrunableLayer to its bases and return them from get_prunable_weights(), e.g. "
            "[self.kernel]."
        )
    return (
        f"Layer '{layer.name}' ({type(layer).__name__}) is not prunable: tfprune does not know which of its "
        "weights to prune. Supported: Dense, EinsumDense, Conv*, DepthwiseConv*, SeparableConv*, Embedding, "
        "MultiHeadAttention, SimpleRNN/LSTM/GRU (also stacked cells), Bidirectional/TimeDistributed around them, "
        "keras-hub's PositionEmbedding and ReversibleEmbedding, "
        "weightless and normalization layers (left dense), and any layer that subclasses tfprune.PrunableLayer "
        "and returns its prunable variables from get_prunable_weights(); your own layers that hold such layers "
        "as attributes are pruned inside."
    )


def _variable(layer, name):
    value = compat.weight_variable(layer, name)
    if value is None:
        raise TypeError(
            f"Layer '{layer.name}' ({type(layer).__name__}) has no variable `{name}` to prune "
            "(is it quantized or LoRA-enabled?). Prune before quantizing, or leave this layer out."
        )
    return value


def describe_weights(layer):
    """The prunable weights of a built layer with the meaning of their axes (empty for unknown layers).

    Custom `PrunableLayer`s get the axes of a Dense/Conv kernel: input -2, output -1.

    Example:

    >>> d = keras.layers.Dense(4); d.build((None, 3))
    >>> [(p.variable.name, p.axes.input, p.axes.output) for p in describe_weights(d)]
    [('kernel', (0,), (1,))]
    """
    if has_custom_prunable_weights(layer):
        return [PrunableWeight(w, WeightAxes.of_shape(w.shape)) for w in layer.get_prunable_weights()]
    if getattr(layer, "quantization_mode", None):
        raise ValueError(
            f"Layer '{layer.name}' is quantized ({layer.quantization_mode}); prune the float model first."
        )
    if isinstance(layer, L.MultiHeadAttention):
        # query/key/value kernels are (dim, heads, key_dim); the output kernel is (heads, key_dim, dim).
        *projections, output = _sublayers(layer)
        return [_with_head(p, p.axes.output[0]) for sub in projections for p in describe_weights(sub)] + [
            _with_head(p, p.axes.input[0]) for p in describe_weights(output)
        ]
    inner = _sublayers(layer)
    if inner is not None:
        return [p for sub in inner for p in describe_weights(sub)]
    return [PrunableWeight(v, axes_of(layer, v))
            for v, axes_of in ((_variable(layer, name), axes_of) for name, axes_of in _weights_by_class(layer))]


def _with_head(prunable, head_axis):
    return dataclasses.replace(prunable, axes=dataclasses.replace(prunable.axes, head=head_axis))


def prunable_weights(layer):
    """The list of prunable variables of a built layer (empty for unknown layers).

    Example:

    >>> d = keras.layers.Dense(4); d.build((None, 3))
    >>> [w.name for w in prunable_weights(d)]
    ['kernel']
    """
    return [p.variable for p in describe_weights(layer)]
