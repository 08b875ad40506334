"""Statistics of the gradients a training step hands its optimizer, kept for some variables.

Some criteria read the loss's gradient during training: RigL grows the inactive weights of
largest gradient, Optimal Brain Damage weighs each weight by the squared gradient (the Fisher
approximation of the Hessian's diagonal), movement pruning sums -gradient x weight. A pruned
weight is stored as zeros and the layer reads it whole, so the gradient the optimizer receives
for it is already dense: the tap keeps what a criterion needs of it. Every Keras backend's train
step (and a custom loop) ends in `optimizer.apply(grads, variables)` (JAX through
`stateless_apply`), so the tap stands in for `apply` on that one optimizer while a `fit` runs,
and hands the call on unchanged. What it keeps (`STATISTICS`):

- "latest": the gradient of the last step that `records(iterations)` accepts (one comparison on the others);
- "squares": the sum of squared gradients, every step;
- "movement": the sum of -gradient x weight (the weight before the step), every step.

TensorFlow and torch keep them in variables of the tap's own (assigned inside the traced step on
TensorFlow); JAX, whose train step is pure, sends them to the host with a callback, as Taylor
importance does. With mixed precision the tap is on the `LossScaleOptimizer`'s inner optimizer,
which receives the unscaled gradients of the steps that are applied. A train step traced before
the tap was installed (a custom loop's own `tf.function` or `jax.jit`) does not reach it: trace
it after `UpdatePruningStep.on_train_begin()`.

Example:

>>> tap = GradientTap(model.optimizer, [kernel], "squares")
>>> model.fit(...)
>>> (squares,), steps = tap.read()
>>> tap.remove()
"""

import functools

import keras
import numpy as np
from keras import ops

from tfprune.backend_calls import host_value
from tfprune.graph import compat

STATISTICS = ("latest", "squares", "movement")


class GradientTap:
    """Keeps `statistic` of the gradients `optimizer` receives for each of `variables`.

    Args:
        optimizer: the Keras optimizer that trains the variables (`training_optimizer`).
        variables: the model variables to keep gradients of (trainable, known to the optimizer).
        statistic: one of `STATISTICS`.
        records: with "latest": `records(iterations)` with the optimizer's iteration count before the step (a
            tensor inside a traced step), true where the step's gradients are to be kept; keras.ops only.
    """

    def __init__(self, optimizer, variables, statistic, records=None):
        if statistic not in STATISTICS:
            raise ValueError(f"`statistic` must be one of {STATISTICS}, got {statistic!r}.")
        self.optimizer, self.variables, self.statistic = optimizer, list(variables), statistic
        self.records = records if statistic == "latest" else None
        self._positions = {id(v): i for i, v in enumerate(self.variables)}
        self._on_host = keras.backend.backend() == "jax"
        if self._on_host:
            self._host = [np.zeros(v.shape, np.float32) for v in self.variables]
            self._host_count, self._host_kept_at = 0, -1
        else:
            self._kept = [keras.Variable(ops.zeros(v.shape, "float32"), trainable=False, name="tapped_gradient")
                          for v in self.variables]
            self._count = keras.Variable(0, dtype="int32", trainable=False, name="tapped_steps")
            self._kept_at = keras.Variable(-1, dtype="int64", trainable=False, name="tapped_iteration")
        # The class's own method: a tap left by a fit that an exception ended is replaced, not chained.
        self._apply = type(optimizer).apply.__get__(optimizer)
        optimizer.apply = self._tapped_apply

    def remove(self):
        """Gives the optimizer its own `apply` back."""
        if self.optimizer.__dict__.get("apply") == self._tapped_apply:
            del self.optimizer.apply

    def read(self):
        """`(what the tap kept of each variable as NumPy arrays, steps kept)`; the steps are 0 before any."""
        *kept, count = self.tensors()
        return [host_value(k) if not isinstance(k, np.ndarray) else k for k in kept], int(host_value(count))

    def finished(self, arrays, steps):
        """The statistic of each variable from what the tap kept over `steps` steps: "squares" as their mean."""
        return [a / max(steps, 1) for a in arrays] if self.statistic == "squares" else list(arrays)

    def steps(self):
        """How many steps were kept since the last reset."""
        if self._on_host:
            import jax

            jax.effects_barrier()
            return self._host_count
        return int(host_value(self._count))

    def kept_at(self):
        """The optimizer's iteration count before the step whose gradients "latest" holds, or -1."""
        return self._host_kept_at if self._on_host else int(host_value(self._kept_at))

    def tensors(self):
        """The statistics and the step count as the backend holds them (variables' values; NumPy under JAX), to
        read inside a compiled call."""
        if self._on_host:
            import jax

            jax.effects_barrier()
            return [k.copy() for k in self._host] + [np.asarray(self._host_count)]
        return [k.value for k in self._kept] + [self._count.value]

    def reset(self):
        """Starts the sums again from zero."""
        if self._on_host:
            import jax

            jax.effects_barrier()
            for k in self._host:
                k[...] = 0.0
            self._host_count, self._host_kept_at = 0, -1
            return
        for k in self._kept:
            k.assign(ops.zeros(k.shape, k.dtype))
        self._count.assign(0)
        self._kept_at.assign(-1)

    def _tapped_apply(self, grads, trainable_variables=None):
        variables = trainable_variables
        if variables is None:
            variables = compat.optimizer_trainable_variables(self.optimizer)
        tapped = [(self._positions[id(v)], self._contribution(g, v)) for v, g in zip(variables, grads)
                  if id(v) in self._positions and g is not None]
        if tapped:
            iterations = self.optimizer.iterations
            now = True if self.records is None else self.records(iterations)
            self._keep(tapped, now, iterations)
        return self._apply(grads, trainable_variables)

    def _contribution(self, gradient, variable):
        gradient = ops.cast(ops.convert_to_tensor(gradient), "float32")  # TensorFlow's IndexedSlices made dense
        if self.statistic == "squares":
            return ops.square(gradient)
        if self.statistic == "movement":
            return -gradient * ops.cast(variable.value, "float32")
        return gradient

    def _keep(self, tapped, now, iterations):
        backend = keras.backend.backend()
        if backend == "jax":
            import jax

            def send(iteration, *contributions):
                jax.debug.callback(functools.partial(self._add_on_host, [i for i, _ in tapped]), iteration,
                                   *contributions)

            values = [ops.convert_to_tensor(iterations), *[c for _, c in tapped]]
            if now is True:
                send(*values)
            else:
                jax.lax.cond(now, send, lambda *values: None, *values)
        elif backend == "tensorflow":
            import tensorflow as tf

            def assign():
                updates = [self._assign(i, c) for i, c in tapped]
                updates += [self._count.assign_add(1), self._kept_at.assign(ops.cast(iterations, "int64"))]
                with tf.control_dependencies(updates):
                    return tf.constant(True)

            if now is True:
                assign()
            else:
                tf.cond(now, assign, lambda: tf.constant(False))
        elif bool(now):  # torch runs eagerly
            for i, c in tapped:
                self._assign(i, c)
            self._count.assign(self._count.value + 1)
            self._kept_at.assign(ops.cast(iterations, "int64"))

    def _assign(self, i, contribution):
        kept = self._kept[i]
        return kept.assign(contribution) if self.statistic == "latest" else kept.assign_add(contribution)

    def _add_on_host(self, positions, iteration, *contributions):
        self._host_kept_at = int(iteration)
        for i, c in zip(positions, contributions):
            if self.statistic == "latest":
                self._host[i] = np.array(c, np.float32)
            else:
                self._host[i] += np.asarray(c, np.float32)
        self._host_count += 1


def training_optimizer(model, variables, what):
    """The optimizer that trains `model`, for a tap on `variables`: with loss scaling its inner optimizer, which
    receives the unscaled gradients. A ValueError that starts with `what` (the criterion that needs the gradients)
    if the model has none or some of the variables are frozen."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        raise ValueError(f"{what}, which it reads from the optimizer that trains the model, but model "
                         f"'{model.name}' has none: compile it with the optimizer you train with "
                         "(model.compile(optimizer=...)), also in a custom training loop.")
    trainable = {id(v) for v in model.trainable_variables}
    frozen = sorted(v.path for v in variables if id(v) not in trainable)
    if frozen:
        raise ValueError(f"{what}, but {frozen} are frozen (trainable=False) and get no gradient: make them "
                         "trainable, or choose a criterion that needs none ('magnitude', 'lamp'; SET instead of "
                         "RigL).")
    return getattr(optimizer, "inner_optimizer", optimizer)
