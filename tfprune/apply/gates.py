"""L0 gates on the channels of a wrapped layer: a piece of the pruning wrapper.

`tfprune.L0Gates` (in `penalties.py`) is the penalty that asks for them and defines the
hard-concrete gate and its loss; `ChannelGates` holds one layer's gates: a trainable
log alpha per channel of each gated role, a random stream of its own (layers of the same
width used to share their noise), and how the gates act on the layer's call.
"""

import math

import keras
import numpy as np
from keras import ops

from tfprune.backend_calls import host_value


class ChannelGates:
    """The L0 gates of one wrapped layer, on the channels of its `roles`.

    Args:
        wrapper: the wrapper whose variables the gates are (so that they save with it); built
            up to its masks (`wrapper.masked`).
        penalty: the `L0Gates` penalty.
        roles: the channel roles gated.
        seed: the wrapper's `keras.random.SeedGenerator` (an attribute of the wrapper, so that
            JAX's train step carries its state).
    """

    def __init__(self, wrapper, penalty, roles, seed):
        self.penalty, self.roles, self.seed = penalty, tuple(roles), seed
        self.masked = [m for m in wrapper.masked if m.role in self.roles]
        self.log_alpha, self.sizes = {}, {}
        for role in self.roles:
            channels = wrapper.channel_masks[role].shape[0]
            self.log_alpha[role] = wrapper.add_weight(
                name=f"{role}_log_alpha", shape=(channels,),
                initializer=keras.initializers.Constant(penalty.initial_log_alpha))
            self.sizes[role] = sum(math.prod(m.variable.shape) // channels for m in self.masked if m.role == role)
        layer = wrapper.layer
        # Gating the output equals gating the weights for a BatchNormalization (whose moving statistics must
        # update as usual) or a layer whose activation commutes with scaling (linear, ReLU); it is also cheaper.
        self.on_outputs = isinstance(layer, keras.layers.BatchNormalization) or (
            self.roles == ("output",) and _commutes_with_scaling(getattr(layer, "activation", None)))

    def call(self, layer_call, training, strength):
        """`(outputs, loss)`: `layer_call()` run with the gates applied, and the gates' penalty at `strength`.

        Other layers than those gated on their outputs see their gated weights through a StatelessScope.
        """
        gates = {role: self.penalty.gates(self.log_alpha[role], training, self.seed) for role in self.roles}
        loss = strength * sum(self.penalty.loss(self.log_alpha[role], self.sizes[role]) for role in self.roles)
        if self.on_outputs:
            (gate,) = gates.values()
            return layer_call() * gate, loss
        mapping = [(m.variable, ops.convert_to_tensor(m.variable) * m.full_mask(gates[m.role]))
                   for m in self.masked]
        with keras.StatelessScope(state_mapping=mapping):
            return layer_call(), loss

    def inference(self):
        """{role: numpy z} of the deterministic gates."""
        return {role: host_value(self.penalty.gates(self.log_alpha[role], False, None)) for role in self.roles}

    def fold(self):
        """Multiplies the gated weights by the inference gates; returns the gates."""
        gates = self.inference()
        for m in self.masked:
            m.multiply_weight(gates[m.role])
        return gates


def _commutes_with_scaling(activation):
    """True if activation(z * x) == z * activation(x) for z >= 0 (linear, ReLU, LeakyReLU), checked on samples."""
    if activation is None:
        return False
    x = np.array([[-10.0, -3.0, -1.0, 0.0, 0.5, 1.0, 4.0, 10.0]], "float32")
    single, double = (host_value(activation(keras.ops.convert_to_tensor(v))) for v in (x, 2 * x))
    return bool(np.allclose(double, 2 * single, rtol=1e-6, atol=0))
