"""Which weights of a layer magnitude pruning masks, and what their axes mean.

The weights of each kind of layer are listed in the layer table (`tfprune.layers.table`);
here they are read for a layer, through Keras' composite layers (attention, RNN,
Bidirectional, TimeDistributed). Your own layer opts in with `tfprune.register_layer`
(a subclass of a Keras layer) or by inheriting `PrunableLayer` and returning its
prunable variables from `get_prunable_weights()`. Biases are never pruned. Layers
without weights pass through untouched.
"""

import abc
import dataclasses

import keras
from keras import layers as L

from tfprune.graph import compat
from tfprune.layers import table
from tfprune.layers.axes import WeightAxes


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
    """(attribute, axes function) of each weight magnitude pruning masks, from the layer table."""
    if not (_from_a_library(layer) or table.is_registered(layer)):
        return ()
    kind = table.kind_of(layer)
    return (kind.weights or ()) if kind else ()


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
    kind = table.kind_of(layer)
    return (kind is not None and kind.weights == ()) or (layer.built and not layer.weights)


def is_supported(layer):
    """True for layers a `PruneLowMagnitude` may wrap: prunable ones, and those with nothing to prune."""
    return is_prunable(layer) or is_dense_by_design(layer)


def unsupported_message(layer):
    """Why `layer` cannot be wrapped for pruning, and what to do about it."""
    kind = table.kind_of(layer)
    base = next((cls for cls in kind.classes if isinstance(cls, type) and isinstance(layer, cls)), None) if (
        kind and kind.weights) else None
    if base:
        return (
            f"Layer '{layer.name}' ({type(layer).__name__}) subclasses {base.__name__}, but its call may use the "
            f"weights differently, so tfprune (like tfmot) does not prune it as a {base.__name__}. If it does use "
            f"them as {base.__name__} does, call tfprune.register_layer({type(layer).__name__}, "
            f"like=keras.layers.{base.__name__}) (channel pruning and FLOPs too), or add tfprune.PrunableLayer to "
            "its bases and return them from get_prunable_weights(), e.g. [self.kernel]."
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
