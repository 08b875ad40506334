"""The gradients a training step hands its optimizer, kept for some variables at chosen steps.

RigL grows the inactive weights whose loss gradient is largest. A pruned weight is stored as
zeros and the layer reads it whole, so the gradient the optimizer receives for it is already
dense: the tap keeps it. Every Keras backend's train step (and a custom loop) ends in
`optimizer.apply(grads, variables)` (JAX through `stateless_apply`), so the tap stands in for
the optimizer's `apply` on that one optimizer, while a `fit` runs, and hands the call on
unchanged. It keeps the gradients only where `records(iterations)` is true (the batch of a
rewiring step), so the other steps cost one comparison:

- TensorFlow and torch assign them to variables of the tap's own (inside the traced step on TensorFlow);
- JAX, whose train step is pure, sends them to the host with a callback, as Taylor importance does.

Example:

>>> tap = GradientTap(model.optimizer, [kernel], records=lambda iterations: iterations % 100 == 99)
>>> model.fit(...)
>>> gradient, = tap.latest()
>>> tap.remove()
"""

import functools

import keras
from keras import ops

from tfprune.backend_calls import host_value


class GradientTap:
    """Keeps the gradient `optimizer` receives for each of `variables` at the iterations `records` accepts.

    Args:
        optimizer: the Keras optimizer that trains the variables.
        variables: the model variables to keep gradients of (trainable, known to the optimizer).
        records: `records(iterations)` with the optimizer's iteration count before the step (a tensor inside
            a traced step), true where the step's gradients are to be kept; keras.ops only.
    """

    def __init__(self, optimizer, variables, records):
        self.optimizer, self.variables, self.records = optimizer, list(variables), records
        self._positions = {id(v): i for i, v in enumerate(self.variables)}
        self._on_host = [None] * len(self.variables)
        self._kept = None
        if keras.backend.backend() != "jax":
            self._kept = [keras.Variable(ops.zeros(v.shape, v.dtype), trainable=False, name="tapped_gradient")
                          for v in self.variables]
        self._recorded = keras.Variable(0, dtype="int32", trainable=False, name="tapped_gradient_count")
        self._apply = optimizer.apply  # the class's method, bound: what `remove` puts back
        optimizer.apply = self._tapped_apply

    def remove(self):
        """Gives the optimizer its own `apply` back."""
        if self.optimizer.__dict__.get("apply") == self._tapped_apply:
            del self.optimizer.apply

    def latest(self):
        """The last kept gradient of each variable as NumPy arrays, or None before any was kept."""
        if keras.backend.backend() == "jax":
            import jax

            jax.effects_barrier()
            return None if any(g is None for g in self._on_host) else [g.copy() for g in self._on_host]
        return [host_value(g) for g in self._kept] if int(host_value(self._recorded)) else None

    def _tapped_apply(self, grads, trainable_variables=None):
        variables = self.optimizer._trainable_variables if trainable_variables is None else trainable_variables
        tapped = [(self._positions[id(v)], g) for v, g in zip(variables, grads) if id(v) in self._positions]
        if tapped:
            self._keep(tapped, self.records(self.optimizer.iterations))
        return self._apply(grads, trainable_variables)

    def _keep(self, tapped, now):
        backend = keras.backend.backend()
        if backend == "jax":
            import jax

            def send(*gradients):
                jax.debug.callback(functools.partial(self._store_on_host, [i for i, _ in tapped]), *gradients)

            jax.lax.cond(now, send, lambda *gradients: None, *[g for _, g in tapped])
        elif backend == "tensorflow":
            import tensorflow as tf

            def assign():
                with tf.control_dependencies([self._kept[i].assign(g) for i, g in tapped]
                                             + [self._recorded.assign_add(1)]):
                    return tf.constant(True)

            tf.cond(now, assign, lambda: tf.constant(False))
        elif bool(now):  # torch runs eagerly
            for i, g in tapped:
                self._kept[i].assign(g)
            self._recorded.assign(self._recorded.value + 1)

    def _store_on_host(self, positions, *gradients):
        for i, g in zip(positions, gradients):
            self._on_host[i] = host_value(g)
