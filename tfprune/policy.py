"""Pruning policies: which layers of a model `prune_low_magnitude` wraps.

`PruningPolicy` prunes every supported layer; `PruneForLatencyOnXNNPack` (as in
tfmot) prunes only the 1x1 convolutions of a network that XNNPACK's sparse
inference can run end to end, from a stride-2 3x3 stem to a global average pool.
"""

import keras
from keras import layers

from tfprune.graph import compat
from tfprune.apply.wrapper import PruneLowMagnitude


class PruningPolicy:
    """Decides which layers get pruned; subclass to restrict pruning.

    Example:

    ```python
    class SkipFirstLayer(tfprune.PruningPolicy):
        def allow_pruning(self, layer):
            return layer.name != "conv_in"
    ```
    """

    def allow_pruning(self, layer):
        """True if `layer` (a prunable layer) should be pruned."""
        return True

    def ensure_model_supports_pruning(self, model):
        """Raises ValueError if `model` does not suit this policy."""


class KeepDense(PruningPolicy):
    """Prunes every supported layer but those named in `names` (the papers of pruning at initialization and
    sparse training often keep the first layer dense).

    Example:

    >>> pruned = tfprune.prune_low_magnitude(model, pruning_policy=KeepDense(["conv_in"]))
    """

    def __init__(self, names):
        self.names = frozenset([names] if isinstance(names, str) else names)

    def allow_pruning(self, layer):
        return layer.name not in self.names

    def ensure_model_supports_pruning(self, model):
        from tfprune.graph.traverse import layers_in

        missing = sorted(self.names - {layer.name for layer in layers_in(model)})
        if missing:
            raise ValueError(f"dense_layers names {missing}, which model '{model.name}' does not have; its layers: "
                             f"{[layer.name for layer in model.layers]}.")


class PruneForLatencyOnXNNPack(PruningPolicy):
    """Prunes only the 1x1 Conv2D layers, and only in a model XNNPACK can run sparsely.

    XNNPACK's sparse inference (Elsen et al., "Fast Sparse ConvNets") speeds up sparse
    1x1 convolutions inside a subgraph that starts with a stride-2 3x3 Conv2D on a
    3-channel input (after `ZeroPadding2D(1)`, padding "valid") and ends with a
    `GlobalAveragePooling2D`; every layer in between must be one XNNPACK supports.
    `prune_low_magnitude` raises a ValueError naming the first layer that breaks this.

    Example:

    ```python
    pruned = tfprune.prune_low_magnitude(
        model, tfprune.ConstantSparsity(0.75, 0), pruning_policy=tfprune.PruneForLatencyOnXNNPack())
    ```
    """

    def allow_pruning(self, layer):
        """Allows only 1x1 Conv2D layers."""
        return isinstance(layer, layers.Conv2D) and layer.kernel_size == (1, 1)

    def ensure_model_supports_pruning(self, model):
        """Raises ValueError unless every input-to-output path is a sparse-inference subgraph."""
        if not (compat.is_functional(model) or isinstance(model, keras.Sequential)):
            raise ValueError("Subclassed models are not supported currently.")
        if not model.built or not model.inputs:
            raise ValueError("Unbuilt models are not supported currently.")
        input_layers = {compat.producer(tensor) for tensor in model.inputs}
        start_layers = _lookup(input_layers, self._is_start_layer, _consumers)
        if not start_layers:
            raise ValueError(
                "Could not find `Conv2D 3x3` layer with stride 2x2, `input filters == 3` and `VALID` padding and "
                "preceding `ZeroPadding2D` with `padding == 1` in all input branches of the model"
            )
        output_layers = {compat.producer(tensor) for tensor in model.outputs}
        end_layers = _lookup(output_layers, _is_end_layer, _producers)
        if not end_layers:
            raise ValueError("Could not find a `GlobalAveragePooling2D` layer in all output branches")

        def stop_at_end_layer(layer):
            if layer not in end_layers and not _xnnpack_supports(layer):
                raise ValueError(
                    f"Layer {type(layer).__name__} is not supported for the {type(self).__name__} pruning policy"
                )
            return layer in end_layers

        _lookup([c for layer in start_layers for c in _consumers(layer)], stop_at_end_layer, _consumers)

    @staticmethod
    def _is_start_layer(layer):
        if not isinstance(layer, layers.Conv2D):
            return False
        producers = list(_producers(layer))
        return (
            hasattr(layer, "kernel")
            and tuple(layer.kernel.shape[:3]) == (3, 3, 3)
            and layer.strides == (2, 2)
            and layer.padding == "valid"
            and len(producers) == 1
            and _zero_padding_of(producers[0]) == 1
        )


def _producers(layer):
    return {parent.operation for node in compat.inbound_nodes(layer) for parent in node.parent_nodes}


def _consumers(layer):
    def first_layer(op):  # a nested Sequential is entered at its first layer
        return first_layer(op.layers[0]) if isinstance(op, keras.Sequential) else op

    return [first_layer(node.operation) for node in compat.outbound_nodes(layer)]


def _lookup(source_layers, stop, next_layers):
    """The layers where `stop(layer)` holds, walking from `source_layers`; empty if a path ends before."""
    to_visit, seen, found = set(source_layers), set(source_layers), set()
    while to_visit:
        layer = to_visit.pop()
        if stop(layer):
            found.add(layer)
            continue
        following = next_layers(layer)
        if not following:
            return set()
        for nxt in following:
            if nxt not in seen:
                seen.add(nxt)
                to_visit.add(nxt)
    return found


def _is_end_layer(layer):
    return isinstance(layer, layers.GlobalAveragePooling2D)


def _zero_padding_of(layer):
    """The symmetric padding p of a `ZeroPadding2D(p)`, else None."""
    if isinstance(layer, layers.ZeroPadding2D) and layer.padding in (((1, 1), (1, 1)), ((2, 2), (2, 2))):
        return layer.padding[0][0]
    return None


_ELEMENTWISE_LAYERS = (
    layers.Add, layers.Multiply, layers.ZeroPadding2D, layers.ReLU, layers.LeakyReLU, layers.ELU,
    layers.Dropout, layers.Identity,
)
_ELEMENTWISE_OPS = ("add", "subtract", "multiply")  # `x + y` etc. written on Keras tensors
_ACTIVATIONS = ("relu", "relu6", "leaky_relu", "elu", "sigmoid")


def _xnnpack_supports(layer):
    """Mirrors XNNPACK's check of which operators its sparse subgraph accepts."""
    if isinstance(layer, PruneLowMagnitude):
        return _xnnpack_supports(layer.layer)
    if isinstance(layer, _ELEMENTWISE_LAYERS):
        return True
    if isinstance(layer, layers.DepthwiseConv2D):
        return _depthwise_supported(layer)
    if isinstance(layer, layers.Conv2D):  # 1x1, no stride, dilation or groups
        return layer.groups == 1 and layer.dilation_rate == (1, 1) and layer.kernel_size == (1, 1) and (
            layer.strides == (1, 1)
        )
    if isinstance(layer, layers.GlobalAveragePooling2D):
        return layer.keepdims
    if isinstance(layer, layers.BatchNormalization):
        return layer.axis in (3, -1)
    if isinstance(layer, layers.UpSampling2D):
        return layer.interpolation == "bilinear"
    if isinstance(layer, layers.Activation):
        return getattr(layer.activation, "__name__", None) in _ACTIVATIONS
    if not isinstance(layer, layers.Layer):
        return type(layer).__name__.lower() in _ELEMENTWISE_OPS
    return False


def _depthwise_supported(layer):
    """3x3 or 5x5, stride 1 "same", or stride 1/2 "valid" after a ZeroPadding2D of 1 or 2."""
    size = layer.kernel_size[0]
    if layer.kernel_size not in ((3, 3), (5, 5)) or layer.depth_multiplier != 1 or layer.dilation_rate != (1, 1):
        return False
    if layer.padding == "same":
        return layer.strides == (1, 1)
    producers = list(_producers(layer))
    padded = len(producers) == 1 and _zero_padding_of(producers[0]) == size // 2
    return layer.padding == "valid" and layer.strides in ((1, 1), (2, 2)) and padded
