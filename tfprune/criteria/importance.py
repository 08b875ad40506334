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
    # A criterion that sets `needs_activations = True` receives, per producing layer, a slice named "entropy"
    # computed from the layer's outputs over data (`prune_to_budget(..., data=x)`, one shot).
    needs_activations = False
    # A criterion of single weights that reads a statistic of the training gradients ("squares": the mean of
    # squared gradients since the last mask update; "movement": the sum of -gradient x weight over the fit)
    # gets it per entry as a slice with the role "statistic" (`apply.gradient_tap.GradientTap`).
    statistic = None

    def __call__(self, slices):
        """Returns one score per unit (array of shape (units,)), or None to leave these units unpruned."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement __call__(slices) returning one score per unit."
        )

    def entry_scores(self, values, layer=None, name="weight", statistic=None):
        """A score for every entry of one weight, in its shape: the units of magnitude pruning. A criterion
        with a `statistic` reads it from `statistic` (an array of the weight's shape).

        >>> L1Norm().entry_scores(np.array([[-3.0, 1.0], [0.5, 0.0]]))
        array([[3. , 1. ],
               [0.5, 0. ]])
        """
        values = np.asarray(values)
        slices = [WeightSlice(layer, "entry", name, values.reshape(-1, 1))]
        if self.statistic is not None:
            if statistic is None:
                raise ValueError(f"{type(self).__name__} scores weights by the training gradients, and none were "
                                 "recorded: train with UpdatePruningStep before the masks update, or prune at once "
                                 "with tfprune.prune_once(model, sparsity, importance, data=(x, y)).")
            slices.append(WeightSlice(layer, "statistic", self.statistic, np.asarray(statistic).reshape(-1, 1)))
        scores = self(slices)
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


class StatisticCriterion(Importance):
    """Base of the criteria of single weights that read a statistic of their entries (the class attribute
    `statistic`, given as the slice of role "statistic"): `score(weights, statistic)` scores entries from both."""

    def __call__(self, slices):
        statistic = [s.values for s in slices if s.role == "statistic"]
        if not statistic:
            return None
        weights = [s.values for s in slices if s.role != "statistic"]
        return sum(self.score(w, g).sum(axis=1) for w, g in zip(weights, statistic))

    def score(self, weights, statistic):
        raise NotImplementedError(f"{type(self).__name__} must implement score(weights, statistic).")


@keras.saving.register_keras_serializable(package="tfprune")
class Entropy(Importance):
    """Entropy of a channel's output over data (Luo & Wu 2017, "An entropy-based pruning method for CNN
    compression"): each image's output of the channel, averaged over its positions (global average pooling),
    binned into `bins` equal bins between the channel's least and greatest value over the images; the score is
    the entropy -sum p log p of that histogram. A channel whose output hardly changes from image to image
    carries little information and goes first. The output is that of the layer that produces the channel (with
    its own activation, if it has one). One shot: `prune_to_budget(model, budget, importance="entropy", data=x)`.
    """

    needs_activations = True

    def __init__(self, bins=32):
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
            raise ValueError(f"`bins` must be an integer >= 2, got {bins!r}.")
        self.bins = bins

    def get_config(self):
        return {"bins": self.bins}

    def __call__(self, slices):
        recorded = [s.values.reshape(len(s.values), -1).sum(axis=1) for s in slices if s.name == "entropy"]
        return sum(recorded) if recorded else None


def histogram_entropy(values, bins):
    """The entropy (in nats) of each column of `values` (examples, channels), binned into `bins` equal bins between
    its least and greatest value; 0 for a constant column.

    >>> histogram_entropy(np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0], [3.0, 1.0]]), bins=4).round(3)
    array([1.386, 0.   ])
    """
    values = np.asarray(values, np.float64)
    low, high = values.min(axis=0), values.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    index = np.clip(((values - low) / span * bins).astype(int), 0, bins - 1)
    entropies = np.zeros(values.shape[1])
    for channel in range(values.shape[1]):
        p = np.bincount(index[:, channel], minlength=bins) / len(values)
        p = p[p > 0]
        entropies[channel] = -(p * np.log(p)).sum() + 0.0  # not -0.0
    return entropies


@keras.saving.register_keras_serializable(package="tfprune")
class LAMP(Importance):
    """Layer-adaptive magnitude (Lee et al. 2021, "Layer-adaptive sparsity for the magnitude-based pruning"):
    a unit's squared norm over the sum of the squared norms of the units of its weight (or set of channels)
    that are at least as large. One global threshold on these scores then chooses every layer's sparsity.

    >>> LAMP().entry_scores(np.array([1.0, 2.0, 3.0]))   # 1/14, 4/13, 9/9
    array([0.07142857, 0.30769231, 1.        ])
    """

    def __call__(self, slices):
        squares = sum(np.square(s.values).sum(axis=1) for s in slices).astype(np.float64)
        order = np.argsort(squares, kind="stable")
        at_least_as_large = np.cumsum(squares[order][::-1])[::-1]
        scores = np.empty_like(squares)
        scores[order] = squares[order] / np.maximum(at_least_as_large, 1e-300)
        return scores


@keras.saving.register_keras_serializable(package="tfprune")
class OBD(StatisticCriterion):
    """Optimal Brain Damage (LeCun et al. 1989): 1/2 h w^2, the loss increase of setting a weight to zero under a
    diagonal quadratic model of the loss, with h the Hessian's diagonal approximated by an empirical Fisher: in
    `tfprune.prune_once`, the mean squared gradient of single examples of `data` (in training mode: a
    BatchNormalization sees batches of one); during `fit`, the mean squared batch gradient of the batches since the
    last mask update (coarser).

    Scores single weights only (prune_low_magnitude, prune_once).
    """

    statistic = "squares"

    def score(self, weights, squares):
        return 0.5 * squares * np.square(weights)


@keras.saving.register_keras_serializable(package="tfprune")
class Saliency(StatisticCriterion):
    """SNIP's connection sensitivity (Lee et al. 2019): |w · g|, the first-order estimate of the loss change when a
    weight is removed. In one shot (`tfprune.snip`, `prune_once`), g is the loss's gradient summed over `data`;
    while training (`prune_low_magnitude`), |sum over the steps of the fit of g · w|.
    """

    statistic = "movement"

    def score(self, weights, moved):
        return np.abs(moved)


@keras.saving.register_keras_serializable(package="tfprune")
class GraSP(StatisticCriterion):
    """GraSP (Wang et al. 2020): w · (Hg), H the loss's Hessian and g its gradient over `data`; the weights whose
    -w · Hg is largest (whose removal lowers the gradient flow least) go. One shot (`tfprune.grasp`,
    `prune_once`); `temperature` divides the logits as the paper's code does (None: 200 for a loss of logits).
    """

    statistic = "hessian_gradient"

    def __init__(self, temperature=None):
        self.temperature = temperature

    def get_config(self):
        return {"temperature": self.temperature}

    def score(self, weights, products):
        return products


@keras.saving.register_keras_serializable(package="tfprune")
class OBS(StatisticCriterion):
    """Optimal Brain Surgeon, layer by layer (Hassibi & Stork 1993; L-OBS, Dong et al. 2017): w^2 / (2 [H^-1]_ii),
    H the Hessian of the layer's reconstruction error from its inputs over `data`; `tfprune.prune_once` then moves
    the kept weights to make up for the pruned ones. One shot only; see `criteria.second_order`.
    """

    statistic = "inverse_hessian_diagonal"

    def score(self, weights, diagonal):
        return np.square(weights) / (2 * diagonal)


@keras.saving.register_keras_serializable(package="tfprune")
class Movement(StatisticCriterion):
    """Movement pruning (Sanh et al. 2020, "Movement pruning: adaptive sparsity by fine-tuning"): -sum over the
    training steps of gradient x weight, high for weights moving away from zero. For pruning while fine-tuning
    (prune_low_magnitude); it sums over the steps of the current `fit`. Unlike the paper's straight-through
    scores, pruned weights are not scored again: they stay pruned.
    """

    statistic = "movement"

    def score(self, weights, moved):
        return moved


MAGNITUDE = L1Norm()  # what prune_low_magnitude ranks weights by unless told otherwise ("magnitude")

_BY_NAME = {"l1": L1Norm, "l2": L2Norm, "bn_scale": BatchNormScale, "taylor": Taylor, "lamp": LAMP, "obd": OBD,
            "obs": OBS, "movement": Movement, "magnitude": L1Norm, "entropy": Entropy, "snip": Saliency,
            "saliency": Saliency, "grasp": GraSP}


def get(identifier):
    """An `Importance` from a name ("l1", "l2", "bn_scale", "taylor", "entropy", "lamp", "obd", "obs", "movement",
    "saliency" or "snip", "grasp", "magnitude": l1),
    a serialized dict or an instance."""
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
