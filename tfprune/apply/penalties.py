"""Penalties on channel groups, added to the loss during `fit` so that training itself picks what to drop.

`GroupLasso` (Wen et al. 2016, "Learning Structured Sparsity in Deep Neural Networks")
adds strength * sum_g sqrt(|g|) * ||w_g||_2 over the same channel groups that `shrink`
removes: every weight coupled to a channel (its kernel column and bias, its BatchNorm
parameters, the next layers' rows) is one group, so whole groups are driven to zero
together. The strength ramps up linearly from 0 over `warmup_steps`, since a full
penalty from the first step can stall learning.

Example:

```python
penalized = tfprune.prune_channels(model, None, penalty=tfprune.GroupLasso(1e-3, warmup_steps=500))
penalized.fit(x, y, epochs=10, callbacks=[tfprune.UpdatePruningStep()])
tfprune.prune_groups_below(penalized, threshold=1e-2)
small = tfprune.shrink(penalized)
```
"""

import math
import numbers

import keras
from keras import ops

from tfprune.structured.configurable import Configurable


class Penalty(Configurable):
    """A loss over channel groups with a strength that warms up from 0; subclass and implement `loss`.

    A penalty with `gated = False` scores the groups' weights (`loss(squared_norms, sizes)`);
    one with `gated = True` puts a trainable gate on every group (`loss(log_alpha, sizes)`).
    """

    gated = False

    def __init__(self, strength, warmup_steps=0):
        if isinstance(strength, bool) or not isinstance(strength, numbers.Real) or not math.isfinite(strength) \
                or strength < 0:
            raise ValueError(f"Penalty strength must be a finite number >= 0, got {strength!r}.")
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, numbers.Integral) or warmup_steps < 0:
            raise ValueError(f"`warmup_steps` must be an integer >= 0, got {warmup_steps!r}.")
        self.strength = float(strength)
        self.warmup_steps = int(warmup_steps)

    def strength_at(self, step):
        """The strength at training step `step` (a tensor): linear from 0 to `strength` over the warm-up."""
        if not self.warmup_steps:
            return ops.convert_to_tensor(self.strength, "float32")
        ramp = ops.clip(ops.cast(step, "float32") / self.warmup_steps, 0.0, 1.0)
        return self.strength * ramp

    def loss(self, values, sizes):
        """The unscaled penalty of a set of groups from their squared L2 norms (or gate parameters) and sizes."""
        raise NotImplementedError(f"{type(self).__name__} must implement loss(values, sizes).")

    def get_config(self):
        return {"strength": self.strength, "warmup_steps": self.warmup_steps}

    def __repr__(self):
        return f"{type(self).__name__}(strength={self.strength:g}, warmup_steps={self.warmup_steps})"


@keras.saving.register_keras_serializable(package="tfprune")
class GroupLasso(Penalty):
    """strength * sum over channel groups g of sqrt(|g|) * ||w_g||_2 (Wen et al. 2016).

    Args:
        strength: the penalty weight once warmed up, >= 0.
        warmup_steps: training steps over which the strength grows linearly from 0.
    """

    def loss(self, squared_norms, sizes):
        return ops.sum(ops.sqrt(sizes) * ops.sqrt(squared_norms + 1e-12))  # finite gradient at a zero group


@keras.saving.register_keras_serializable(package="tfprune")
class L0Gates(Penalty):
    """Hard-concrete gates on channel groups with an expected-L0 penalty (Louizos, Welling & Kingma 2018).

    Each group gets a gate z in [0, 1] with a trainable log alpha. In training
    z = clip(sigmoid((log u - log(1 - u) + log alpha) / beta) * (zeta - gamma) + gamma, 0, 1), u ~ U(0, 1),
    drawn per batch; in inference z = clip(sigmoid(log alpha) * (zeta - gamma) + gamma, 0, 1). The loss is
    strength * sum over gates of sigmoid(log alpha - beta * log(-gamma / zeta)), the probability that a
    gate is open (times the group's weights with `per_weight=True`). A gate on a Dense/Conv scales its
    pre-activation output (kernel column and bias), on a BatchNormalization its output.
    `tfprune.fold_gates(model)` folds them into the weights when training is done.

    Args:
        strength: lambda, >= 0.
        warmup_steps: steps over which lambda grows from 0.
        per_weight: weigh each gate by the number of weights in its group.
        initial_drop_rate: the probability that a gate starts closed (sets the initial log alpha).
    """

    beta, gamma, zeta = 2.0 / 3.0, -0.1, 1.1
    gated = True

    def __init__(self, strength, warmup_steps=0, per_weight=False, initial_drop_rate=0.2):
        super().__init__(strength, warmup_steps)
        if not 0 < initial_drop_rate < 1:
            raise ValueError(f"`initial_drop_rate` must be in (0, 1), got {initial_drop_rate!r}.")
        self.per_weight = bool(per_weight)
        self.initial_drop_rate = float(initial_drop_rate)

    @property
    def initial_log_alpha(self):
        return math.log(1 - self.initial_drop_rate) - math.log(self.initial_drop_rate)

    def gates(self, log_alpha, training, seed):
        """z for every gate: noisy in training, deterministic otherwise."""
        if training:
            u = keras.random.uniform(ops.shape(log_alpha), 1e-6, 1 - 1e-6, seed=seed)
            s = ops.sigmoid((ops.log(u) - ops.log(1 - u) + log_alpha) / self.beta)
        else:
            s = ops.sigmoid(log_alpha)
        return ops.clip(s * (self.zeta - self.gamma) + self.gamma, 0.0, 1.0)

    def loss(self, log_alpha, sizes):
        """Expected number of open gates (weighted by `sizes` with per_weight)."""
        open_probability = ops.sigmoid(log_alpha - self.beta * math.log(-self.gamma / self.zeta))
        return ops.sum(open_probability * sizes) if self.per_weight else ops.sum(open_probability)

    def get_config(self):
        return {**super().get_config(), "per_weight": self.per_weight, "initial_drop_rate": self.initial_drop_rate}


class PenaltyTerm:
    """The weights of one set of channel groups, gathered per group inside the train step.

    `slices` are (variable, axis, repeat, rows): `rows` (groups, k) index the variable's
    channels along `axis` (each `repeat` entries wide); `sizes` are the weights per group.
    """

    def __init__(self, slices, sizes):
        self.slices, self.sizes = slices, ops.convert_to_tensor(sizes, "float32")

    def squared_norms(self):
        """Squared L2 norm of each group: per-channel sums of squares first (no gather of whole weights)."""
        total = 0.0
        for variable, axis, repeat, rows in self.slices:
            value = ops.convert_to_tensor(variable)
            per_entry = ops.sum(ops.square(value), axis=[a for a in range(len(variable.shape)) if a != axis])
            per_channel = ops.sum(ops.reshape(per_entry, (-1, repeat)), axis=1)
            total = total + ops.sum(ops.take(per_channel, rows, axis=0), axis=1)
        return total


def get(identifier):
    """A `Penalty` from an instance, a serialized dict or None."""
    if identifier is None or isinstance(identifier, Penalty):
        return identifier
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    raise ValueError(f"`penalty` must be a tfprune.Penalty such as tfprune.GroupLasso(1e-3), got {identifier!r}.")


def serialize(penalty):
    return None if penalty is None else keras.saving.serialize_keras_object(penalty)
