"""Parameters and FLOPs of a Keras model, to show what structured pruning saves.

FLOPs are 2 x the multiply-accumulates of the layers that dominate inference:
Dense, EinsumDense, Conv, ConvTranspose, DepthwiseConv, SeparableConv and
MultiHeadAttention (its projections and its two attention products), counted for
one example. Element-wise work (activations, normalization, additions) is left out.

The model is traced once on a symbolic batch of one example, recording the shapes
each of those layers is called with, so that layers inside custom layers (a
keras-hub `TransformerEncoder` builds its Dense and attention layers in `build()`)
and every call of a shared layer are counted.
"""

import contextlib
import dataclasses
import warnings

import keras

from tfprune.graph import compat
from tfprune.graph.traverse import outermost
from tfprune.layers import table


@dataclasses.dataclass(frozen=True)
class Cost:
    """Parameters and FLOPs (for one example) of a model, and its latency as a `LatencyTable` predicts it."""

    params: int
    flops: int
    latency: float | None = None
    latency_unit: str | None = None

    def __str__(self):
        text = f"{_short(self.params)} parameters, {_short(self.flops)} FLOPs"
        if self.latency is None:
            return text
        return f"{text}, {latency_text(self.latency, self.latency_unit)} (predicted)"


def latency_text(value, unit):
    """`0.241 ms`, or `3.23M instructions`."""
    return f"{value:.3f} ms" if unit == "ms" else f"{_short(round(value))} {unit}"


def _short(count):
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= size:
            return f"{count / size:.2f}{unit}"
    return str(count)


def model_cost(model, latency_table=None):
    """Parameters and FLOPs of a built model with known inputs (Sequential, Functional, keras-hub backbones).

    Input sizes left unknown (`None`, such as a sequence length) count as 1: a
    sequence model's FLOPs are then those of one token. With a `tfprune.LatencyTable` of the
    model (or of the model it was shrunk from), also its predicted latency.

    Example:

    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model_cost(model)
    Cost(params=36, flops=64, latency=None, latency_unit=None)
    """
    flops = int(sum(call_flops(call) for call in traced_calls(model)))
    if latency_table is None:
        return Cost(params=int(model.count_params()), flops=flops)
    return Cost(int(model.count_params()), flops, latency_table.predict(model), latency_table.unit)


@dataclasses.dataclass(frozen=True)
class _Call:
    """One call of a counted layer: its arguments and outputs, tensors as `KerasTensor`s (batch of one)."""

    layer: keras.layers.Layer
    args: tuple
    kwargs: dict
    outputs: object

    @property
    def input(self):
        return self.args[0] if self.args else next(iter(self.kwargs.values()))

    @property
    def output(self):
        return keras.tree.flatten(self.outputs)[0]


def traced_calls(model):
    """Every call of a counted layer when `model` runs on one example."""
    try:
        inputs = model.inputs[0] if isinstance(model, keras.Sequential) else model.input
    except (AttributeError, ValueError) as error:
        raise ValueError(
            f"model_cost needs a built model with known inputs; '{model.name}' ({type(model).__name__}) has none. "
            "Build it on keras.Input (Functional or Sequential) first."
        ) from error
    example = keras.tree.map_structure(
        lambda tensor: keras.KerasTensor((1, *(size or 1 for size in tensor.shape[1:])), tensor.dtype), inputs)
    calls = []
    with _recording(_counted_layers(model), calls), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. Keras' softmax-over-one-position warning when a length counts as 1
        compat.compute_output_spec(model, example)
    return calls


def _counted_layers(layer):
    """The layers with a FLOPs formula inside `layer`, outermost ones only (an attention's projections are its own)."""
    return outermost(layer, table.counted_by_flops)


@contextlib.contextmanager
def _recording(layers, calls):
    """Appends a `_Call` to `calls` for each call of `layers` in the block (the way Keras' GPTQ hooks `call`)."""
    own_calls = {id(layer): layer.__dict__.get("call") for layer in layers}

    def recorded(layer, call):
        def recording_call(*args, **kwargs):
            outputs = call(*args, **kwargs)
            calls.append(_Call(layer, *(_specs(structure) for structure in (args, kwargs, outputs))))
            return outputs

        return recording_call

    for layer in layers:
        layer.call = recorded(layer, layer.call)
    try:
        yield
    finally:
        for layer in layers:
            if own_calls[id(layer)] is None:
                del layer.call
            else:
                layer.call = own_calls[id(layer)]


def _specs(structure):
    return keras.tree.map_structure(
        lambda x: keras.KerasTensor(x.shape, x.dtype) if keras.ops.is_tensor(x) else x, structure)


def call_flops(call):
    return table.kind_of(call.layer).flops(call.layer, call)

