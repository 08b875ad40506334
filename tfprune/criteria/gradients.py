"""Gradients of a model's loss over data, on every Keras backend, without changing the model.

Criteria that score weights by gradients before training (SNIP's |w·g|, GraSP's w·Hg) and
one-shot Taylor channel scores need a pass of the loss's gradients over data. `scoring_pass`
runs one epoch of `fit` with an optimizer that changes no weight, then puts every variable
back (BatchNorm statistics and the pruning step move in a training pass): Keras' own train
step computes the gradients, so the same code serves TensorFlow, JAX and torch.
`loss_gradients` sums them per weight with `GradientSum`, an optimizer that only accumulates
(the sum of each batch's mean gradient); `hessian_products` gets H·g by finite differences of two
gradient passes. Regularization and penalty losses count, as in training.

Example:

>>> gradients = loss_gradients(pruned, (x, y), "sparse_categorical_crossentropy", weights)
"""

import keras
import numpy as np

from tfprune.backend_calls import host_value
from tfprune.graph import compat


class GradientSum(keras.optimizers.Optimizer):
    """An optimizer that changes no weight: it adds each batch's gradient (squared with `squared=True`) to a sum
    per variable (`sums`)."""

    def __init__(self, squared=False):
        super().__init__(learning_rate=0.0, name="gradient_sum")
        self.squared = squared

    def build(self, variables):
        super().build(variables)
        self.sums = [self.add_variable_from_reference(variable, "gradient_sum") for variable in variables]

    def update_step(self, gradient, variable, learning_rate):
        total = self.sums[compat.optimizer_variable_index(self, variable)]
        gradient = keras.ops.cast(gradient, total.dtype)
        self.assign(total, total + (keras.ops.square(gradient) if self.squared else gradient))

    def sum_of(self, variable):
        """The summed gradient of a model variable the optimizer was built for."""
        return host_value(self.sums[compat.optimizer_variable_index(self, variable)])


def scoring_pass(model, data, loss, optimizer, keep=lambda variable: True, batch_size=None):
    """One epoch of `fit` over `data` with `optimizer`, in which pruning wrappers run as in training; afterwards
    every variable that `keep` accepts has its value from before again, and the model is compiled as before (a
    model that was not asks for `compile` again, instead of training with `optimizer`).

    `data` is `(x, y)`, `(x, y, sample_weight)` (in batches of `batch_size`, default Keras' 32) or a finite
    dataset of batches.
    """
    from tfprune.apply.wrapper import pruning_wrappers
    from tfprune.callbacks import UpdatePruningStep

    if getattr(model.dtype_policy, "name", "") == "mixed_float16":
        raise ValueError("Scoring by gradients needs float32 gradients, but the model computes in mixed_float16, "
                         "whose loss scaling drops the batches that overflow: build the model under "
                         "keras.mixed_precision.set_global_policy('float32') to score it.")
    compiled = model.get_compile_config() if model.compiled else None
    kept = [(variable, host_value(variable)) for variable in model.variables if keep(variable)]
    model.compile(optimizer, loss)
    x, y, weights = (*data, None)[:3] if isinstance(data, tuple) else (data, None, None)
    try:
        model.fit(x, y, sample_weight=weights, batch_size=None if y is None else batch_size, epochs=1, verbose=0,
                  shuffle=False,
                  callbacks=[UpdatePruningStep()] if pruning_wrappers(model) else [])
    except ValueError as error:
        raise ValueError(f"`data` does not fit model '{model.name}' (its gradients come from one epoch of fit on "
                         f"it): {error}") from error
    finally:
        for variable, value in kept:
            variable.assign(value)
        if compiled:
            model.compile_from_config(compiled)
        else:
            model.compiled = False  # Keras' own flag: fit and evaluate ask for compile()


def loss_gradients(model, data, loss, weights):
    """The loss's gradient with respect to each of `weights` (variables of `model`), summed over `data`'s batches,
    as numpy arrays."""
    optimizer = GradientSum()
    scoring_pass(model, data, loss, optimizer)
    return [optimizer.sum_of(weight) for weight in weights]


def fisher_diagonal(model, data, loss, weights, batch_size=1):
    """The mean over `data`'s batches of each batch's squared gradient, for each of `weights`: with arrays in
    batches of one example (`batch_size`), the empirical Fisher approximation of the Hessian's diagonal that
    Optimal Brain Damage weighs weights by (a dataset comes in its own batches)."""
    optimizer = GradientSum(squared=True)
    scoring_pass(model, data, loss, optimizer, batch_size=batch_size)
    batches = max(int(host_value(optimizer.iterations)), 1)
    return [optimizer.sum_of(weight) / batches for weight in weights]


def hessian_products(model, data, loss, weights, vectors, step=1e-3):
    """H·v for each of `weights` and its vector in `vectors` (the Hessian of the summed loss over `data`), by the
    central difference of the gradients at w ± h·v, with h = `step` · |w| / |v| over all weights.

    Finite differences need no second derivatives of the backend: the same two gradient passes run everywhere.
    The weights are moved by assignment, past any mask: call it before pruning, as GraSP does.
    """
    scale = np.sqrt(sum(float(np.sum(np.square(host_value(w)))) for w in weights))
    norm = np.sqrt(sum(float(np.sum(np.square(v))) for v in vectors))
    h = step * max(scale, 1.0) / max(norm, 1e-30)
    start = [host_value(w) for w in weights]
    gradients = []
    for sign in (1.0, -1.0):
        for weight, value, vector in zip(weights, start, vectors):
            weight.assign(value + sign * h * vector)
        gradients.append(loss_gradients(model, data, loss, weights))
    for weight, value in zip(weights, start):
        weight.assign(value)
    return [(plus - minus) / (2 * h) for plus, minus in zip(*gradients)]
