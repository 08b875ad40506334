"""Pruning in stateless training loops (JAX's `jax.jit` loops, `model.stateless_call`).

Such a loop keeps the model's variables as arrays and updates them with
`optimizer.stateless_apply`, which knows the masks only as the values they had when
the step was traced: pruned weights would grow back after every later mask update.
`apply_masks` takes the masks from the loop's own non-trainable values instead;
`masked_train_step` does the same for `model.fit` (installed by `UpdatePruningStep`).
"""

import keras

from tfprune.apply.constraint import KeepPruned


def apply_masks(model, trainable_values, non_trainable_values):
    """`trainable_values` with every pruned entry zeroed by the masks held in `non_trainable_values`.

    Pure: call it inside a jitted train step, right after `optimizer.stateless_apply`. The
    values are in the order of `model.trainable_variables` and `model.non_trainable_variables`.

    Example:

    ```python
    trainable, optimizer_state = optimizer.stateless_apply(optimizer_state, grads, trainable)
    trainable = tfprune.apply_masks(model, trainable, non_trainable)
    ```
    """
    state = list(zip(model.non_trainable_variables, non_trainable_values))
    with keras.StatelessScope(state_mapping=state):
        return [
            variable.constraint.apply_mask(value) if isinstance(variable.constraint, KeepPruned) else value
            for variable, value in zip(model.trainable_variables, trainable_values)
        ]


def masked_train_step(model, train_step):
    """JAX's `train_step(state, data)` with the pruned weights zeroed by the masks held in the state.

    While the step is traced, the mask constraints are deferred: in the optimizer's
    stateless scope the masks have no value (`fit` empties the variables) or a stale one
    (the value at tracing). `apply_masks` then zeroes the returned trainable values by
    the state's masks, so a mask update needs no retracing.
    """

    def masked_step(state, data):
        constraints = [v.constraint for v in model.trainable_variables if isinstance(v.constraint, KeepPruned)]
        for constraint in constraints:
            constraint.deferred = True
        try:
            logs, (trainable, non_trainable, *rest) = train_step(state, data)
        finally:
            for constraint in constraints:
                constraint.deferred = False
        return logs, (apply_masks(model, trainable, non_trainable), non_trainable, *rest)

    return masked_step


def sync_variables(model):
    """Writes the train state of a running JAX `fit` back into the model's variables, before they are read or
    written outside the train step (`fit` empties them between syncs, and reads them again at its next batch).

    A no-op on the other backends.
    """
    sync = getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()


def retrace_train_step(model):
    """Makes `fit` trace `model`'s train step again at its next batch, e.g. after a value it reads changed.

    Under JAX the step is a fresh `masked_train_step`: jit would find the same function in its
    cache and keep the values it traced with (a learning-rate offset outside the train state).
    """
    if keras.backend.backend() == "jax" and hasattr(model, "train_step"):
        model.train_step = masked_train_step(model, type(model).train_step.__get__(model))
    if hasattr(model, "make_train_function"):
        model.make_train_function(force=True)
