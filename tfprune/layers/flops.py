"""FLOPs of one call of a layer, from the shapes traced for it (a batch of one; see `tfprune.model_cost`).

Each function takes the layer and its traced call (`.input`, `.output`, `.args`, `.kwargs`) and counts a
multiply-add as two FLOPs.
"""

import math

from tfprune.graph import compat


def positions(tensor):
    """Positions in the traced batch: every axis but the channel one (the batch axis is 1, or the time axis
    folded into it by TimeDistributed)."""
    return math.prod(size or 1 for size in tensor.shape[:-1])


def per_output_position(layer, call):
    """Dense, Conv (grouped too), DepthwiseConv: the whole kernel at every output position."""
    return 2 * positions(call.output) * math.prod(layer.kernel.shape)


def per_input_position(layer, call):
    """Transposed convolutions: the whole kernel at every input position."""
    return 2 * positions(call.input) * math.prod(layer.kernel.shape)


def separable(layer, call):
    depthwise = layer.depthwise_kernel.shape
    return 2 * positions(call.output) * (math.prod(depthwise) + depthwise[-2] * depthwise[-1] * layer.filters)


def einsum(layer, call):
    """Every output value sums the kernel entries along the kernel's axes absent from the output."""
    operands, output = layer.equation.replace(" ", "").split("->")
    kernel_axes = operands.split(",")[1]
    contracted = math.prod(size for axis, size in zip(kernel_axes, layer.kernel.shape) if axis not in output)
    return 2 * math.prod(call.output.shape) * contracted


def attention(layer, call):
    """The four projections, the scores and the weighted values of a MultiHeadAttention."""
    query = call.args[0] if call.args else call.kwargs["query"]
    value = call.args[1] if len(call.args) > 1 else call.kwargs["value"]
    query_positions, value_positions = positions(query), positions(value)
    projections = compat.attention_projections(layer)
    q, k, v, o = (projections[role].kernel.shape for role in ("query", "key", "value", "output"))
    projected = query_positions * (math.prod(q) + math.prod(o)) + value_positions * (math.prod(k) + math.prod(v))
    return 2 * (projected + query_positions * value_positions * (q[1] * q[2] + v[1] * v[2]))
