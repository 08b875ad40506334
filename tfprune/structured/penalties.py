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


class Penalty:
    """A loss over channel groups with a strength that warms up from 0; subclass and implement `loss`."""

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

    def loss(self, squared_norms, sizes):
        """The unscaled penalty of a set of groups from their squared L2 norms and their sizes (weights)."""
        raise NotImplementedError(f"{type(self).__name__} must implement loss(squared_norms, sizes).")

    def get_config(self):
        return {"strength": self.strength, "warmup_steps": self.warmup_steps}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self), self.strength, self.warmup_steps))

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


def get(identifier):
    """A `Penalty` from an instance, a serialized dict or None."""
    if identifier is None or isinstance(identifier, Penalty):
        return identifier
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    raise ValueError(f"`penalty` must be a tfprune.Penalty such as tfprune.GroupLasso(1e-3), got {identifier!r}.")


def serialize(penalty):
    return None if penalty is None else keras.saving.serialize_keras_object(penalty)
