"""Parameters and FLOPs of a Keras model, to show what structured pruning saves.

FLOPs are 2 x the multiply-accumulates of the layers that dominate inference:
Dense, Conv, ConvTranspose, DepthwiseConv, SeparableConv and MultiHeadAttention
(its projections and its two attention products), counted for one example.
Element-wise work (activations, normalization, additions) is left out.
"""

import dataclasses
import math

import keras
from keras import layers as L

from tfprune.containers import is_graph_model


@dataclasses.dataclass(frozen=True)
class Cost:
    """Parameters and FLOPs (for one example) of a model."""

    params: int
    flops: int

    def __str__(self):
        return f"{_short(self.params)} parameters, {_short(self.flops)} FLOPs"


def _short(count):
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= size:
            return f"{count / size:.2f}{unit}"
    return str(count)


def model_cost(model):
    """Parameters and FLOPs of a built Sequential or Functional model.

    Example:

    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model_cost(model)
    Cost(params=36, flops=64)
    """
    return Cost(params=int(model.count_params()), flops=int(_model_flops(model)))


def _model_flops(model):
    total = 0
    for layer in model.layers:
        if is_graph_model(layer):
            total += _model_flops(layer) * len(layer._inbound_nodes)
            continue
        for node in layer._inbound_nodes:
            if node.input_tensors and node.output_tensors:
                total += _layer_flops(layer, node)
    return total


def _spatial(tensor):
    """Positions per example: the product of the axes between batch and channels."""
    return math.prod(d or 1 for d in tensor.shape[1:-1])


def _layer_flops(layer, node):
    x, y = node.input_tensors[0], node.output_tensors[0]
    if isinstance(layer, L.MultiHeadAttention):
        return _attention_flops(layer, node)
    if isinstance(layer, L.SeparableConv1D | L.SeparableConv2D):
        depthwise = layer.depthwise_kernel.shape
        return 2 * _spatial(y) * (math.prod(depthwise) + depthwise[-2] * depthwise[-1] * layer.filters)
    if isinstance(layer, L.DepthwiseConv1D | L.DepthwiseConv2D):
        return 2 * _spatial(y) * math.prod(layer.kernel.shape)
    if isinstance(layer, L.Conv1DTranspose | L.Conv2DTranspose | L.Conv3DTranspose):
        return 2 * _spatial(x) * math.prod(layer.kernel.shape)
    if isinstance(layer, L.Conv1D | L.Conv2D | L.Conv3D | L.Dense):
        return 2 * _spatial(y) * math.prod(layer.kernel.shape)
    return 0


def _attention_flops(layer, node):
    query = node.arguments.args[0] if node.arguments.args else node.arguments.kwargs["query"]
    value = node.arguments.args[1] if len(node.arguments.args) > 1 else node.arguments.kwargs["value"]
    query_positions, value_positions = _spatial(query), _spatial(value)
    q, k, v, o = (d.kernel.shape for d in (layer._query_dense, layer._key_dense, layer._value_dense,
                                           layer._output_dense))
    projections = query_positions * (math.prod(q) + math.prod(o)) + value_positions * (math.prod(k) + math.prod(v))
    attention = query_positions * value_positions * (q[1] * q[2] + v[1] * v[2])  # scores, then weighted values
    return 2 * (projections + attention)
