"""Dynamic sparse training: a fixed number of weights that move during training (SET, RigL).

Every `update_every` steps until `end_step`, each pruned weight drops a fraction of its active
entries, those of smallest magnitude, and grows as many inactive ones back:

- SET (Mocanu et al. 2018, "Scalable training of artificial neural networks with adaptive sparse
  connectivity"): at random. As RigL's and jaxpruner's SET do, the drop is by |w| (the paper drops the
  positive and the negative weights nearest zero separately) and grown weights start at zero;
- RigL (Evci et al. 2020, "Rigging the Lottery"): those with the largest gradient, that of the
  update step's batch (`apply.gradient_tap.GradientTap` keeps it from the optimizer).

Weights move after the batch of an update step (`PruningController.finish_step`, which
`UpdatePruningStep` calls at the next batch, or at the end of the epoch before it saves the step),
so a model saved at the end of an epoch holds every move up to its step, and a run resumed from
it moves the same weights as one that was never stopped.

The fraction decays as in RigL: `drop_fraction / 2 * (1 + cos(pi * step / end_step))` ("cosine"),
or stays ("constant"). Grown weights start at zero, and their optimizer state (momentum, Adam's
moments) is reset, also where a just-dropped entry grows back. Neither RigL's nor jaxpruner's
code keeps just-dropped entries out of the growth, and neither does this one. Each update draws
from `default_rng((seed, step))`, so a run resumed from a saved model moves the same weights.

`DynamicSparsity` is the schedule (saved with the model); `Rewiring` is the part of the pruning
controller that moves the masks. `tfprune.sparse_training` sets the first masks.
"""

import math
import warnings

import keras
import numpy as np

from tfprune.apply.gradient_tap import GradientTap, training_optimizer
from tfprune.apply.wrapper import saved_step
from tfprune.backend_calls import host_value
from tfprune.graph import compat
from tfprune.schedules import PruningSchedule
from tfprune.validation import check_sparsity
from tfprune.stateless import sync_variables
from tfprune.validation import is_integer

METHODS = ("set", "rigl")
DROP_SCHEDULES = ("cosine", "constant")


@keras.saving.register_keras_serializable(package="tfprune")
class DynamicSparsity(PruningSchedule):
    """Holds the sparsity and moves the masks every `update_every` steps until `end_step` (SET or RigL).

    Args:
        sparsity: the fraction of weights pruned, from the first step to the last.
        end_step: the last step that moves weights (RigL stops at 75% of training).
        method: "set" (grow at random) or "rigl" (grow the largest gradients).
        update_every: steps between updates.
        drop_fraction: the fraction of active weights moved at the first update.
        drop_schedule: "cosine" (decays to 0 at `end_step`, as RigL) or "constant".
        seed: the seed of SET's random growth (and of ties).

    Example:

    >>> schedule = DynamicSparsity(0.9, end_step=1000, update_every=100)
    >>> schedule(200), round(schedule.drop_fraction_at(500), 3)
    ((True, 0.9), 0.15)
    """

    masks_set_by = "tfprune.sparse_training"

    def __init__(self, sparsity, end_step, method="set", update_every=100, drop_fraction=0.3, drop_schedule="cosine",
                 seed=0):
        check_sparsity("sparsity", sparsity)
        if method not in METHODS:
            raise ValueError(f"`method` must be one of {METHODS} (or 'static' in tfprune.sparse_training), got "
                             f"{method!r}.")
        if drop_schedule not in DROP_SCHEDULES:
            raise ValueError(f"`drop_schedule` must be one of {DROP_SCHEDULES}, got {drop_schedule!r}.")
        if isinstance(drop_fraction, bool) or not isinstance(drop_fraction, (int, float)) or not 0 < drop_fraction <= 1:
            raise ValueError(f"`drop_fraction` must be in (0, 1], the fraction of active weights moved at an update; "
                             f"got {drop_fraction!r} (RigL uses 0.3).")
        if not is_integer(end_step) or end_step < 1:
            raise ValueError(f"`end_step` must be the last training step that moves weights (an integer >= 1), got "
                             f"{end_step!r}; RigL stops at 75% of the run: end_step=int(0.75 * epochs * steps_per_epoch).")
        if is_integer(update_every) and update_every > end_step:
            raise ValueError(f"`update_every`={update_every} is longer than the run's moving phase (end_step={end_step}), "
                             "so no weight would ever move: lower update_every or raise end_step.")
        if not is_integer(seed):
            raise ValueError(f"`seed` must be an integer, got {seed!r}.")
        super().__init__(begin_step=0, end_step=end_step, frequency=update_every)
        self.sparsity, self.method, self.drop_fraction = float(sparsity), method, float(drop_fraction)
        self.drop_schedule, self.seed = drop_schedule, int(seed)

    @property
    def update_every(self):
        return self.frequency

    @property
    def needs_gradients(self):
        return self.method == "rigl"

    def sparsity_at(self, step):
        return self.sparsity

    @property
    def final_sparsity(self):
        return self.sparsity

    def drop_fraction_at(self, step):
        """The fraction of each weight's active entries moved at `step`."""
        if self.drop_schedule == "constant":
            return self.drop_fraction
        return self.drop_fraction / 2 * (1 + math.cos(math.pi * min(step, self.end_step) / self.end_step))

    def shortfall(self, layer_names, last_step):
        return None  # the sparsity holds from the first step

    def get_config(self):
        return self._config(sparsity=self.sparsity, end_step=self.end_step, method=self.method,
                            update_every=self.frequency, drop_fraction=self.drop_fraction,
                            drop_schedule=self.drop_schedule, seed=self.seed)


def rewired(weight, mask, fraction, grow_scores, rng=None):
    """`(after_drop, new_mask)` for one weight: the `fraction` of its active entries (`mask` True) of smallest
    magnitude dropped, then as many inactive entries of highest `grow_scores` grown (just-dropped ones included).
    Ties are broken at random by `rng` (a NumPy Generator), else by position.

    >>> rewired(np.array([3.0, -1.0, 0.0, 2.0]), np.array([True, True, False, True]), 0.34, np.array([0, 0, 5.0, 0]))
    (array([ True, False, False,  True]), array([ True, False,  True,  True]))
    """
    count = int(round(fraction * mask.sum()))
    if count == 0:
        return mask.copy(), mask.copy()
    order = rng.permutation(mask.size) if rng is not None else np.arange(mask.size)
    active = mask.reshape(-1)[order]
    drop = np.argpartition(np.where(active, np.abs(weight).reshape(-1)[order], np.inf), count - 1)[:count]
    after_drop = active.copy()
    after_drop[drop] = False
    grow = np.argpartition(np.where(after_drop, -np.inf, grow_scores.reshape(-1)[order]), -count)[-count:]
    new_mask = after_drop.copy()
    new_mask[grow] = True
    return tuple(_unpermuted(m, order).reshape(mask.shape) for m in (after_drop, new_mask))


def _unpermuted(values, order):
    result = np.empty_like(values)
    result[order] = values
    return result


class Rewiring:
    """Moves the masks of the `PruneLowMagnitude` wrappers with a `DynamicSparsity` schedule (one, shared)."""

    def __init__(self, model, wrappers):
        self.model, self.wrappers = model, list(wrappers)
        self.schedule = self.wrappers[0].pruning_schedule
        for w in self.wrappers:
            if w.pruning_schedule != self.schedule:
                raise ValueError(f"Dynamic sparse training moves the weights of all its layers on one schedule, but "
                                 f"'{w.layer.name}' has {w.pruning_schedule!r} and '{self.wrappers[0].layer.name}' "
                                 f"has {self.schedule!r}: prune the model with one tfprune.sparse_training call.")
            if w.granularity.m_by_n or w.granularity.block_size != (1, 1):
                raise ValueError(f"Dynamic sparse training moves single weights, but '{w.layer.name}' is pruned in "
                                 "blocks or N:M: leave block_size and sparsity_m_by_n at their defaults.")
        self.weights = [(w, v, m.mask) for w in self.wrappers for v, m in zip(w.pruned_weights, w.masked)]
        self._tap, self._shift = None, 0
        self._warned_no_gradient = False

    def set_step_driven(self, driven):
        """Starts (or stops) keeping RigL's gradients from the optimizer of the model, as a `fit` starts (ends)."""
        if self._tap is not None:
            self._tap.remove()
            self._tap = None
        if driven and self.schedule.needs_gradients:
            variables = [v for _, v, _ in self.weights]
            optimizer = training_optimizer(self.model, variables, "RigL grows the weights of largest gradient")
            self._shift = self._step_minus_iterations(optimizer)
            self._tap = GradientTap(optimizer, variables, "latest",
                                    records=lambda iterations: self.schedule(iterations + self._shift)[0])

    def finish_step(self, step):
        """After the batch of `step`: moves the masks if it is an update step; returns True if it did."""
        if not self.schedule.decision(step)[0]:
            return False
        sync_variables(self.model)
        gradients = self._gradients(step)
        if self.schedule.needs_gradients and gradients is None:
            return False
        rng = np.random.default_rng((self.schedule.seed, step))
        fraction = self.schedule.drop_fraction_at(step)
        moved = []
        for i, (_, variable, mask) in enumerate(self.weights):
            score = np.abs(gradients[i]) if gradients is not None else rng.random(variable.shape)  # RigL, SET
            moved.append(rewired(host_value(variable), host_value(mask) > 0, fraction, score, rng))
        self._write(step, moved)
        return True

    def _write(self, step, moved):
        """Zeroes the dropped weights, opens the grown ones (at zero) and resets their optimizer state."""
        moved = iter(moved)
        slots = self._optimizer_slots()
        for wrapper in self.wrappers:
            on_wrapper = [next(moved) for _ in wrapper.pruned_weights]
            wrapper.apply_masks([after_drop for after_drop, _ in on_wrapper], step)  # dropped, and regrown, at zero
            wrapper.apply_masks([new for _, new in on_wrapper], step)
            for variable, (after_drop, _) in zip(wrapper.pruned_weights, on_wrapper):
                for slot in slots.get(id(variable), ()):
                    slot.assign(slot.value * keras.ops.cast(after_drop, slot.dtype))

    def _optimizer_slots(self):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None or not optimizer.built:
            return {}
        return {id(v): compat.optimizer_slots(optimizer, v) for _, v, _ in self.weights}

    def _gradients(self, step):
        if not self.schedule.needs_gradients:
            return None
        gradients, steps, kept_at = None, 0, -1
        if self._tap is not None:
            gradients, steps = self._tap.read()
            kept_at = self._tap.kept_at()
            self._tap.reset()  # so that each update reads the gradient of its own batch, or none
        if steps and kept_at + self._shift == step:
            return gradients
        if not self._warned_no_gradient:
            self._warned_no_gradient = True
            why = (f"the gradient kept is that of step {kept_at + self._shift} (the optimizer's iterations moved "
                   "apart from the pruning step: skipped loss-scaled steps, rewinding, steps_per_execution > 1)"
                   if steps else "no gradient was kept for it (a train step traced before on_train_begin(), or an "
                   "optimizer other than the model's)")
            warnings.warn(f"RigL skips its update at step {step}: {why}.", stacklevel=2)
        return None

    def _step_minus_iterations(self, optimizer):
        """The pruning step of a batch minus the optimizer's iteration count before it, for the run starting now
        (its first batch is the saved step + 1)."""
        return saved_step(self.wrappers) + 1 - int(host_value(optimizer.iterations))
