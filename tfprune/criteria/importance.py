"""Importance criteria: a score per prunable unit, the lowest pruned first.

A criterion sees units as `WeightSlice`s: arrays with one row per unit. For channel
pruning a unit is a group of coupled channels (for example one of the 64 filters of
a Conv2D with the BatchNormalization after it and the rows of the next layer), and
its row holds every weight along it. For magnitude pruning a unit is one weight
entry (`entry_scores`): one slice with one entry per row, so that L1 and L2 are the
magnitude. It returns one score per unit. Add your own by subclassing `Importance`.

Example:

```python
class MaxMagnitude(tfprune.Importance):
    def __call__(self, slices):
        return np.max([np.abs(s.values).max(axis=1) for s in slices], axis=0)

model = tfprune.prune_channels(model, schedule, importance=MaxMagnitude())
```
"""

import dataclasses

import keras
import numpy as np

from tfprune.structured.configurable import Configurable


@dataclasses.dataclass(frozen=True)
class WeightSlice:
    """One weight seen along a set of channel groups.

    Attributes:
        layer: the layer holding the weight.
        role: the layer's role in the group ("output", "input", "channel", "heads", ...).
        name: the weight's name ("kernel", "bias", "gamma", ...).
        values: array (groups, entries): row g holds every entry of the weight that belongs to group g.
    """

    layer: object
    role: str
    name: str
    values: np.ndarray


class Importance(Configurable):
    """Scores the units of one weight or one set of coupled channels; subclass it to add a criterion.

    A criterion that sets `needs_gradients = True` also receives, per producing layer, a slice
    named "taylor": the squared gradient of a unit gate on each channel, averaged over the
    training batches since the last update.
    """

    needs_gradients = False

    def __call__(self, slices):
        """Returns one score per unit (array of shape (units,)), or None to leave these units unpruned."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement __call__(slices) returning one score per unit."
        )

    def entry_scores(self, values, layer=None, name="weight"):
        """A score for every entry of one weight, in its shape: the units of magnitude pruning.

        >>> L1Norm().entry_scores(np.array([[-3.0, 1.0], [0.5, 0.0]]))
        array([[3. , 1. ],
               [0.5, 0. ]])
        """
        values = np.asarray(values)
        scores = self([WeightSlice(layer, "entry", name, values.reshape(-1, 1))])
        if scores is None:
            raise ValueError(f"{type(self).__name__} cannot score single weight entries; use 'l1' or 'l2'.")
        return np.asarray(scores).reshape(values.shape)


@keras.saving.register_keras_serializable(package="tfprune")
class L1Norm(Importance):
    """Sum of absolute values of every weight coupled to the group (Li et al. 2017, filter pruning);
    for a single weight entry, its magnitude: what `prune_low_magnitude` ranks by."""

    def __call__(self, slices):
        return sum(np.abs(s.values).sum(axis=1) for s in slices)


@keras.saving.register_keras_serializable(package="tfprune")
class L2Norm(Importance):
    """Euclidean norm of every weight coupled to the group (the magnitude, for a single weight entry)."""

    def __call__(self, slices):
        return np.sqrt(sum(np.square(s.values).sum(axis=1) for s in slices))


@keras.saving.register_keras_serializable(package="tfprune")
class BatchNormScale(Importance):
    """|gamma| of the BatchNormalization on the group (network slimming, Liu et al. 2017).

    Sets of channels without a BatchNormalization scale are left unpruned.
    """

    def __call__(self, slices):
        scales = [np.abs(s.values).sum(axis=1) for s in slices if s.name == "gamma"]
        return sum(scales) if scales else None


@keras.saving.register_keras_serializable(package="tfprune")
class Taylor(Importance):
    """First-order Taylor: (sum over the group of weight * gradient)^2, averaged over recent batches.

    Molchanov et al. 2019. Recorded as the gradient of a unit gate on each channel's output
    during `fit` (TensorFlow, JAX, torch), and reset after every pruning update.
    """

    needs_gradients = True

    def __call__(self, slices):
        recorded = [s.values.sum(axis=1) for s in slices if s.name == "taylor"]
        return sum(recorded) if recorded else None


_BY_NAME = {"l1": L1Norm, "l2": L2Norm, "bn_scale": BatchNormScale, "taylor": Taylor}
MAGNITUDE = L1Norm()


def get(identifier):
    """An `Importance` from a name ("l1", "l2", "bn_scale", "taylor"), a serialized dict or an instance."""
    if isinstance(identifier, Importance):
        return identifier
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    raise ValueError(
        f"Unknown importance {identifier!r}. Use one of {sorted(_BY_NAME)}, or an instance of a "
        "tfprune.Importance subclass."
    )


def serialize(importance):
    return keras.saving.serialize_keras_object(importance)
