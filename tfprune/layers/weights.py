"""What the axes of a layer's prunable weights mean, by kind of weight (`WeightAxes` for each variable)."""

from tfprune.layers.axes import WeightAxes


def kernel_axes(layer, variable):
    """A Dense or Conv kernel, an embedding table: (..., input, output)."""
    return WeightAxes.of_shape(variable.shape)


def transposed_kernel_axes(layer, variable):
    """A transposed convolution's kernel: (..., output, input)."""
    return WeightAxes.of_shape(variable.shape, transposed=True)


def depthwise_axes(layer, variable):
    """A depthwise kernel: (..., channel, multiplier)."""
    rank = len(variable.shape)
    return WeightAxes(depthwise=rank - 2, output=(rank - 1,))


def einsum_axes(layer, variable):
    """From the equation: kernel letters shared with the output are output axes, the others input axes."""
    inputs, outputs = layer.equation.split("->")
    _, kernel = inputs.split(",")
    if "." in kernel:
        return WeightAxes.of_shape(variable.shape)
    output_axes = tuple(i for i, letter in enumerate(kernel) if letter in outputs)
    input_axes = tuple(i for i, letter in enumerate(kernel) if letter not in outputs)
    return WeightAxes(input=input_axes, output=output_axes)
