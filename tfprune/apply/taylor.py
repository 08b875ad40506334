"""First-order Taylor importance recorded during `fit`: a piece of the pruning wrapper.

For each output channel of the wrapped layer, the sum over a batch of output × gradient
is the gradient of a unit gate on that channel, the first-order estimate of the loss change
when the channel is removed (Molchanov et al. 2019). The recorder adds its square per batch;
the channel controller reads the mean when it prunes and resets it after.
"""

import keras

from tfprune.backend_calls import HostTotals, host_value, record_taylor


class TaylorRecorder:
    """Squared gate gradients per output channel of one wrapped layer, summed over training batches.

    Its variables are the wrapper's own (`taylor_sum`, `taylor_batches`), so they save with it.
    """

    def __init__(self, wrapper, channels):
        self.total = wrapper.add_weight(name="taylor_sum", shape=(channels,), initializer="zeros", trainable=False)
        self.batches = wrapper.add_weight(name="taylor_batches", shape=(), initializer="zeros", trainable=False)
        # JAX's train step is pure: its backward pass sends the sums to the host instead
        self.on_host = HostTotals(channels) if keras.backend.backend() == "jax" else None

    def record(self, outputs):
        """`outputs` unchanged; their gradient is recorded in the backward pass."""
        return record_taylor(outputs, self.total, self.batches, self.on_host)

    def mean(self):
        """Mean squared gate gradient per output channel since the last reset, or None before any batch."""
        total, batches = host_value(self.total), host_value(self.batches)
        if self.on_host is not None:
            on_host, batches_on_host = self.on_host.read()
            total, batches = total + on_host, batches + batches_on_host
        return total / batches if batches > 0 else None

    def reset(self):
        for variable in (self.total, self.batches):
            variable.assign(keras.ops.zeros(variable.shape, variable.dtype))
        if self.on_host is not None:
            self.on_host.reset()
