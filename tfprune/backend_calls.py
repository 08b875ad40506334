"""Backend-specific pieces of the pruning core, behind a backend check.

The mask update runs as one compiled call on TensorFlow (eager elsewhere); Taylor
importance records gradients in the backward pass (TensorFlow, JAX, torch).

Example:

>>> double = one_graph_call(lambda: host_call(lambda x: 2 * x, [variable.value], [(variable.shape, "float32")]))
>>> doubled, = double()
"""

import keras
import numpy as np
from keras import ops


def step_dtype():
    """The dtype of step counters: int64 as in tfmot, but int32 under JAX without 64-bit mode, which would
    truncate an int64 to int32 anyway (warning every time)."""
    if keras.backend.backend() == "jax":
        import jax

        if not jax.config.jax_enable_x64:
            return "int32"
    return "int64"


def host_value(x):
    """`x` (a variable or tensor) as a writable NumPy array, read without NumPy 2's deprecation warning about
    `__array__(copy=...)` (which a JAX variable and `convert_to_numpy` of a TensorFlow tensor give).

    >>> host_value(keras.Variable([1.0, 2.0]))
    array([1., 2.], dtype=float32)
    """
    value = x.value if isinstance(x, keras.Variable) else x
    if keras.backend.backend() == "tensorflow":
        value = np.asarray(value)
    elif keras.backend.backend() == "torch" and hasattr(value, "detach"):  # torch's __array__ takes no copy=
        value = value.detach().cpu().numpy().copy()  # not a view: the variable may change after
    else:
        value = ops.convert_to_numpy(value)
    return value if value.flags.writeable else value.copy()


def one_graph_call(fn):
    """`fn` traced into a single TensorFlow graph on the TensorFlow backend; unchanged on others.

    A mask update reads and assigns a few variables per layer. Run eagerly, or with arguments
    to convert, each costs a Python round trip, which dominates the update of small models.
    """
    if keras.backend.backend() != "tensorflow":
        return fn
    import tensorflow as tf

    return tf.function(fn, autograph=False)


def host_call(fn, tensors, outputs):
    """Calls the NumPy function `fn(*tensors)` from inside a `one_graph_call` (directly off TensorFlow).

    `outputs` lists the (shape, dtype) of the arrays `fn` returns.
    """
    if keras.backend.backend() != "tensorflow":
        return fn(*(ops.convert_to_numpy(t) for t in tensors))
    import tensorflow as tf

    results = tf.numpy_function(fn, list(tensors), [dtype for _, dtype in outputs], stateful=True)
    for result, (shape, _) in zip(results, outputs):
        result.set_shape(shape)
    return results


class HostTotals:
    """Taylor sums added on the host, where JAX's backward pass sends them (its train step holds no variables)."""

    def __init__(self, size):
        self._total, self._batches = np.zeros(size, np.float32), 0

    def add(self, contribution):
        self._total += np.square(np.asarray(contribution, np.float32))
        self._batches += 1

    def read(self):
        """`(sum per channel, batches)`, once every callback that JAX has queued has run."""
        import jax

        jax.effects_barrier()
        return self._total.copy(), self._batches

    def reset(self):
        import jax

        jax.effects_barrier()
        self._total[:], self._batches = 0.0, 0


def record_taylor(outputs, total, batches, host_totals):
    """`outputs` unchanged; in the backward pass, adds (sum of outputs * gradient per channel)^2 to the totals.

    That sum is the first-order Taylor estimate of the loss change when a channel is removed
    (Molchanov et al. 2019): the gradient of a unit gate on the channel. TensorFlow adds it to
    the variables `total` and `batches` (the count of calls), and so does torch from a gradient
    hook; JAX, whose train step is pure, adds it to `host_totals` (a `HostTotals`) through a
    host callback.
    """
    if keras.backend.backend() == "jax":
        return _record_taylor_on_host(outputs, host_totals)
    if keras.backend.backend() == "torch":  # eager autograd: a hook on the outputs sees their gradient
        def add(upstream):  # on the device: no copy to the host per batch
            contribution = (outputs.detach().float() * upstream.float()).sum(dim=tuple(range(outputs.dim() - 1)))
            total.assign(total.value + contribution ** 2)
            batches.assign(batches.value + 1.0)

        if outputs.requires_grad:
            outputs.register_hook(add)
        return outputs
    import tensorflow as tf  # `prune_channels` refuses gradient-based importance on any other backend

    @tf.custom_gradient
    def gate(x):
        def backward(upstream):
            axes = list(range(len(x.shape) - 1))
            contribution = tf.reduce_sum(tf.cast(x * upstream, total.dtype), axis=axes)
            with tf.control_dependencies([total.assign_add(tf.square(contribution)), batches.assign_add(1.0)]):
                return tf.identity(upstream)

        return tf.identity(x), backward

    return gate(outputs)


def _record_taylor_on_host(outputs, host_totals):
    import jax
    import jax.numpy as jnp

    @jax.custom_vjp
    def gate(x):
        return x

    def forward(x):
        return x, x

    def backward(x, upstream):
        contribution = jnp.sum((x * upstream).astype(jnp.float32), axis=tuple(range(x.ndim - 1)))
        jax.debug.callback(host_totals.add, contribution)
        return (upstream,)

    gate.defvjp(forward, backward)
    return gate(outputs)
