"""Layers' inputs and outputs over data, batch by batch: what criteria that read activations are computed from
(Optimal Brain Surgeon's layer-wise Hessians, the entropy of channels).

Example:

>>> for inputs, in layer_values(model, [dense.input], x):
...     total += inputs.T @ inputs
"""

import keras
import numpy as np

from tfprune.backend_calls import host_value


def layer_values(model, tensors, data, batch_size=256):
    """Yields, for each batch of `data`'s inputs (`(x, ...)` or an array), the values of `tensors` (symbolic
    inputs or outputs of layers of the Functional or Sequential `model`) as NumPy arrays, in inference mode."""
    try:
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        probe = keras.Model(inputs, list(tensors))
    except (AttributeError, ValueError, TypeError) as error:
        raise ValueError(f"Reading the layers' activations of model '{model.name}' needs a Functional or Sequential "
                         f"model ({error}).") from error
    x = data[0] if isinstance(data, tuple) else data
    if not hasattr(x, "shape"):
        raise ValueError(f"Give the data as an array of inputs, x or (x, y), to read activations over (a model of one "
                         f"input); got {type(x).__name__}.")
    for start in range(0, len(x), batch_size):
        values = probe(x[start:start + batch_size], training=False)
        yield [host_value(v) for v in (values if isinstance(values, (list, tuple)) else [values])]


def channel_entropies(model, layers, data, bins):
    """{id(layer): the entropy of each output channel's global-average-pooled output over `data`} for the wrapped
    `layers` (pruning wrappers) of `model`: Luo & Wu's criterion (`importance.Entropy`)."""
    from tfprune.criteria.importance import histogram_entropy

    pooled = [[] for _ in layers]
    for outputs in layer_values(model, [layer.output for layer in layers], data):
        for kept, output in zip(pooled, outputs):
            kept.append(output.reshape(len(output), -1, output.shape[-1]).mean(axis=1))
    return {id(getattr(layer, "layer", layer)): histogram_entropy(np.concatenate(kept), bins)
            for layer, kept in zip(layers, pooled)}
