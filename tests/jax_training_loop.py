"""The README's JAX training loop (keras.io's "writing a training loop from scratch" in JAX) on a pruned
model, run by tests/test_stateless.py in a process of its own: `python jax_training_loop.py [--no-masks]`.
Prints the sparsity report's totals as JSON, read before `on_train_end` (which re-zeroes pruned weights)."""

import json
import os
import sys

os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfprune  # noqa: E402

keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)])
model = tfprune.prune_low_magnitude(model, tfprune.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=16, frequency=4))
optimizer = keras.optimizers.Adam(1e-2)
optimizer.build(model.trainable_variables)
loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
with_masks = "--no-masks" not in sys.argv


def compute_loss_and_updates(trainable, non_trainable, x, y):
    y_pred, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
    return loss_fn(y, y_pred), non_trainable


grad_fn = jax.value_and_grad(compute_loss_and_updates, has_aux=True)


@jax.jit
def train_step(state, x, y):
    trainable, non_trainable, optimizer_state = state
    (loss, non_trainable), grads = grad_fn(trainable, non_trainable, x, y)
    trainable, optimizer_state = optimizer.stateless_apply(optimizer_state, grads, trainable)
    if with_masks:
        trainable = tfprune.apply_masks(model, trainable, non_trainable)  # masks from the state, not the trace
    return loss, (trainable, non_trainable, optimizer_state)


groups = (model.trainable_variables, model.non_trainable_variables, optimizer.variables)
rng = np.random.default_rng(0)
x, y = rng.normal(size=(16 * 32, 64)).astype("float32"), rng.integers(0, 10, 16 * 32)
pruning_step = tfprune.UpdatePruningStep()
pruning_step.set_model(model)
pruning_step.on_train_begin()
for batch in range(16):
    pruning_step.on_train_batch_begin(batch)  # updates the masks in the variables when the schedule says so
    state = tuple([v.value for v in variables] for variables in groups)
    loss, state = train_step(state, x[batch * 32:(batch + 1) * 32], y[batch * 32:(batch + 1) * 32])
    for variables, values in zip(groups, state):
        for variable, value in zip(variables, values):
            variable.assign(value)
total = tfprune.sparsity_report(model)["total"]
pruning_step.on_train_end()
print(json.dumps({"sparsity": total["sparsity"], "nonzero_under_mask": total["nonzero_under_mask"]}))
