"""Optimal Brain Surgeon, layer by layer: second-order pruning from each layer's inputs, with compensation.

For a Dense or Conv2D layer computing y = x·W (a convolution on its input patches), the squared
error of its outputs when W moves by dW is dWᵀ H dW per output, with H = XᵀX / n the Hessian of
the layer-wise reconstruction error (X: the layer's inputs, or input patches, over `data`). Optimal
Brain Surgeon (Hassibi & Stork 1993) in this layer-wise form (L-OBS, Dong et al. 2017):

- removing w_ij alone, with the best change of the other weights of output j, costs
  w_ij² / (2 [H⁻¹]_ii): the score (`OBS` in `criteria.importance`);
- once a set S of output j's inputs is pruned, the remaining R are moved to what minimises the
  error: w_R += (H_RR)⁻¹ H_RS w_S (`compensated`), the exact OBS update for a set.

The cost is one d_in x d_in matrix per layer (d_in = inputs, or kh·kw·c_in for a convolution)
and one solve per output of up to d_in unknowns: O(d_out · d_in³). That suits layers up to a few
thousand inputs (LeNet's 784, a 3x3 convolution of 256 channels: 2,304); beyond, it stops scaling.
H is damped by 1% of its mean diagonal, as SparseGPT does, so that dead inputs do not make it singular.
"""

import keras
import numpy as np

from tfprune.backend_calls import host_value
from tfprune.criteria.activations import layer_values

DAMPING = 0.01


def input_rows(layer):
    """The function taking a batch of `layer`'s inputs to rows of x (one per output position) such that its
    outputs are rows @ kernel (reshaped to 2-D), or a ValueError for layers OBS does not handle."""
    if type(layer) is keras.layers.Dense:
        return lambda inputs: np.asarray(inputs).reshape(-1, layer.kernel.shape[0])
    if type(layer) is keras.layers.Conv2D and layer.groups == 1 and layer.data_format == "channels_last":
        size = layer.kernel.shape[0] * layer.kernel.shape[1] * layer.kernel.shape[2]

        def patches(inputs):
            rows = keras.ops.image.extract_patches(inputs, layer.kernel_size, strides=layer.strides,
                                                   dilation_rate=layer.dilation_rate, padding=layer.padding,
                                                   data_format="channels_last")
            return host_value(rows).reshape(-1, size)

        return patches
    raise ValueError(f"OBS handles Dense and Conv2D layers (channels_last, groups=1), not '{layer.name}' "
                     f"({type(layer).__name__}): leave it dense (dense_layers=[...]) or prune by 'obd'.")


def input_hessians(model, layers, data):
    """{layer: H = XᵀX / n, damped (float64)} for `layers` of the Functional or Sequential `model`, over `data`'s
    inputs (`(x, ...)` or an array); n counts rows (examples x output positions). A pruning wrapper's inputs are
    its layer's."""
    functions = [input_rows(getattr(layer, "layer", layer)) for layer in layers]
    totals, counts = [0.0] * len(layers), [0] * len(layers)
    for inputs in layer_values(model, [layer.input for layer in layers], data):
        for i, (rows_of, value) in enumerate(zip(functions, inputs)):
            rows = rows_of(value).astype(np.float64)
            totals[i], counts[i] = totals[i] + rows.T @ rows, counts[i] + len(rows)
    return {layer: damped(total / max(count, 1)) for layer, total, count in zip(layers, totals, counts)}


def damped(hessian):
    """`hessian` + DAMPING x its mean diagonal on the diagonal."""
    return hessian + DAMPING * max(float(np.mean(np.diag(hessian))), 1e-12) * np.eye(len(hessian))


def inverse_diagonal(hessian, shape):
    """[H⁻¹]_ii broadcast over the kernel of `shape` (d_in rows of the 2-D view, reshaped back)."""
    diagonal = np.diag(np.linalg.inv(hessian))
    return np.broadcast_to(diagonal[:, None], (len(diagonal), int(np.prod(shape)) // len(diagonal))).reshape(shape)


def compensated(kernel, keep, hessian):
    """`kernel` with its pruned entries (`keep` False) at zero and, per output, its kept ones moved by the OBS
    update for the pruned set: w_R + (H_RR)⁻¹ H_RS w_S."""
    shape = kernel.shape
    weights = np.asarray(kernel, np.float64).reshape(len(hessian), -1)
    kept = np.asarray(keep, bool).reshape(weights.shape)
    result = np.where(kept, weights, 0.0)
    for j in range(weights.shape[1]):
        rest, gone = kept[:, j], ~kept[:, j]
        if gone.any() and rest.any():
            change = np.linalg.solve(hessian[np.ix_(rest, rest)], hessian[np.ix_(rest, gone)] @ weights[gone, j])
            result[rest, j] += change
    return result.reshape(shape)
