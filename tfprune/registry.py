"""Which weights of which layer are prunable: the single source of truth.

Built-in layers are listed here; a custom layer opts in by inheriting
`PrunableLayer` and returning its prunable variables from `get_prunable_weights()`.
Biases are never pruned. Layers without weights pass through untouched.
"""

import abc

import keras
from keras import layers as L


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


# Layer classes -> names of their prunable weight attributes.
_WEIGHTS_BY_CLASS = (
    (L.Dense, ("kernel",)),
    (L.EinsumDense, ("kernel",)),
    (L.Conv1DTranspose, ("kernel",)),
    (L.Conv2DTranspose, ("kernel",)),
    (L.Conv3DTranspose, ("kernel",)),
    (L.DepthwiseConv1D, ("kernel",)),
    (L.DepthwiseConv2D, ("kernel",)),
    (L.SeparableConv1D, ("depthwise_kernel", "pointwise_kernel")),
    (L.SeparableConv2D, ("depthwise_kernel", "pointwise_kernel")),
    (L.Conv1D, ("kernel",)),
    (L.Conv2D, ("kernel",)),
    (L.Conv3D, ("kernel",)),
    (L.Embedding, ("embeddings",)),
    (L.SimpleRNNCell, ("kernel", "recurrent_kernel")),
    (L.LSTMCell, ("kernel", "recurrent_kernel")),
    (L.GRUCell, ("kernel", "recurrent_kernel")),
)

# Weighted layers that are deliberately left dense, without a warning.
_DENSE_BY_DESIGN = (
    L.BatchNormalization,
    L.LayerNormalization,
    L.GroupNormalization,
    L.Normalization,
    L.InputLayer,
)


def _sublayers(layer):
    """Inner layers whose weights belong to a container layer."""
    if isinstance(layer, L.MultiHeadAttention):
        return [layer._query_dense, layer._key_dense, layer._value_dense, layer._output_dense]
    if isinstance(layer, L.Bidirectional):
        return [layer.forward_layer, layer.backward_layer]
    if isinstance(layer, L.TimeDistributed):
        return [layer.layer]
    if isinstance(layer, L.RNN) and isinstance(layer.cell, (L.SimpleRNNCell, L.LSTMCell, L.GRUCell)):
        return [layer.cell]
    return None


def is_prunable(layer):
    """True if tfprune knows which weights of `layer` to prune (decided by type, before build)."""
    if isinstance(layer, PrunableLayer):
        return True
    if isinstance(layer, (L.Bidirectional, L.TimeDistributed)):
        return is_prunable(layer.forward_layer if isinstance(layer, L.Bidirectional) else layer.layer)
    if _sublayers(layer) is not None:
        return True
    return any(isinstance(layer, cls) for cls, _ in _WEIGHTS_BY_CLASS)


def is_dense_by_design(layer):
    """True for layers that pass through: no weights, or normalization layers."""
    return isinstance(layer, _DENSE_BY_DESIGN) or (layer.built and not layer.weights)


def _variable(layer, name):
    # Dense/Conv/Embedding keep the variable in `_name` behind a property that may add LoRA terms.
    value = getattr(layer, "_" + name, None)
    if not isinstance(value, keras.Variable):
        value = getattr(layer, name, None)
    if not isinstance(value, keras.Variable):
        raise TypeError(
            f"Layer '{layer.name}' ({type(layer).__name__}) has no variable `{name}` to prune "
            "(is it quantized or LoRA-enabled?). Prune before quantizing, or leave this layer out."
        )
    return value


def prunable_weights(layer):
    """The list of prunable variables of a built layer (empty for unknown layers).

    Example:

    >>> d = keras.layers.Dense(4); d.build((None, 3))
    >>> [w.name for w in prunable_weights(d)]
    ['kernel']
    """
    if isinstance(layer, PrunableLayer):
        return list(layer.get_prunable_weights())
    if getattr(layer, "quantization_mode", None):
        raise ValueError(
            f"Layer '{layer.name}' is quantized ({layer.quantization_mode}); prune the float model first."
        )
    inner = _sublayers(layer)
    if inner is not None:
        return [w for sub in inner for w in prunable_weights(sub)]
    for cls, names in _WEIGHTS_BY_CLASS:
        if isinstance(layer, cls):
            return [_variable(layer, n) for n in names]
    return []
