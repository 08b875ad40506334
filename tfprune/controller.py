"""Model-level mask updates: one view of every pruned layer, for layer and global scope.

Global pruning ranks the weights of all layers together, so the schedule and the
mask update live here rather than in each wrapper. `UpdatePruningStep` drives a
controller; custom training loops can drive one directly.
"""

import warnings

import numpy as np

from tfprune import masks as masks_lib
from tfprune import schedules
from tfprune.backend_calls import host_call, one_graph_call
from tfprune.criteria.importance import MAGNITUDE
from tfprune.graph.traverse import layers_in
from tfprune.stateless import sync_variables
from tfprune.wrapper import PruneLowMagnitude, PruningWrapper

# N:M masks are computed once, at step 1 (the first training batch), and then held, whatever the
# wrapper's schedule says, as in tfmot (`pruning_impl.Pruning.conditional_mask_update`). Its sparsity
# is not used: an N:M update always zeroes m of every n weights.
M_BY_N_AT_STEP_1 = schedules.ConstantSparsity(0.0, begin_step=1, end_step=1, frequency=1)


def pruning_wrappers(model):
    """All tfprune wrappers (`PruneLowMagnitude`, `PruneChannels`) inside `model`, nested models included."""
    if isinstance(model, PruningWrapper):
        return [model]
    return [layer for layer in layers_in(model) if isinstance(layer, PruningWrapper)]


def mask_schedule(wrapper):
    """The schedule that decides when `wrapper`'s masks update: its own, or `M_BY_N_AT_STEP_1` for N:M.

    None for a channel wrapper without a schedule (penalty only), whose masks never update.
    """
    if isinstance(wrapper, PruneLowMagnitude) and wrapper.granularity.m_by_n:
        return M_BY_N_AT_STEP_1
    return wrapper.pruning_schedule


def warn_if_m_by_n_ignores_schedule(schedule, m_by_n):
    """Warns (from the caller of `prune_low_magnitude`) when N:M pruning is given a schedule other than tfmot's default."""
    if m_by_n is None or schedule == schedules.DEFAULT_SCHEDULE:
        return
    m, n = m_by_n
    warnings.warn(
        f"With sparsity_m_by_n={tuple(m_by_n)}, N:M pruning zeroes {m} of every {n} weights ({m / n:.0%}) once, at "
        f"step 1 (the first training batch), and holds those masks, as tfmot does: the sparsity and the steps of "
        f"{schedule!r} are not used. Leave out `pruning_schedule` to silence this warning.",
        stacklevel=3,
    )


class StepKeeping:
    """The pruning step that controllers read from and save into their `wrappers`."""

    wrappers = ()
    model = None

    def sync_state(self):
        """Brings the state of a running JAX `fit` into the variables, so that the masks and weights written
        here are the ones it trains on next (`stateless.sync_variables`)."""
        sync_variables(self.model)

    @property
    def step(self):
        """The number of training steps already taken, as saved in the model (0 before the first fit)."""
        return saved_step(self.wrappers)

    def set_step_driven(self, driven):
        for w in self.wrappers:
            w.step_driven = driven

    def save_step(self, step):
        self.sync_state()
        for w in self.wrappers:
            w.pruning_step.assign(step)


class PruningController(StepKeeping):
    """Updates masks of every wrapper in a model at the steps their schedules ask for.

    Example:

    >>> controller = PruningController(pruned_model)
    >>> controller.update(step=0)  # masks now at the schedule's sparsity for step 0
    """

    def __init__(self, model):
        self.model = model
        self.wrappers = [w for w in pruning_wrappers(model) if isinstance(w, PruneLowMagnitude)]
        if not self.wrappers:
            raise ValueError(
                "The model has no pruned layers. Wrap it first: model = tfprune.prune_low_magnitude(model, ...)."
            )
        for w in self.wrappers:
            if not w.built:
                raise ValueError(f"Pruned layer '{w.name}' is not built yet: call the model on data (or build it) first.")
        # Wrappers of weightless layers (Dropout, Flatten, ... as tfmot wraps them) only carry the step.
        masked = [w for w in self.wrappers if w.masks]
        self.layer_scoped = [w for w in masked if w.scope == "layer"]
        self.global_scoped = tuple(w for w in masked if w.scope == "global")
        self._global_axes = [a for w in self.global_scoped for a in w.weight_axes]
        _check_global_settings_agree(self.global_scoped)
        self._compiled = {}
        self._pending = None  # (step, layer sparsities, global sparsity) of the update being run

    def update(self, step):
        """Recomputes masks where a schedule says so at `step`; returns True if any changed."""
        due = []
        for w in self.layer_scoped:
            should_update, sparsity = mask_schedule(w).decision(step)
            if should_update:
                due.append((w, sparsity))
        global_sparsity = None
        if self.global_scoped:
            should_update, sparsity = mask_schedule(self.global_scoped[0]).decision(step)
            if should_update:
                global_sparsity = sparsity
        if not due and global_sparsity is None:
            return False
        targets = tuple(w for w, _ in due) + (self.global_scoped if global_sparsity is not None else ())
        self._pending = (step, [sparsity for _, sparsity in due], global_sparsity)
        self.sync_state()
        self._update_call(targets)()
        return True

    def _update_call(self, targets):
        """One compiled call, without arguments, that updates the masks of a set of wrappers.

        It reads the weights, computes masks on the host (`_new_masks`, which takes the step
        and sparsities from `self._pending`) and applies them. Compiled once per set.
        """
        if targets not in self._compiled:
            weights = [v for w in targets for v in w.pruned_weights]
            outputs = [(v.shape, "bool") for v in weights] + [((), "int64")]

            def update():
                *masks, step = host_call(lambda *values: self._new_masks(targets, values), [v.value for v in weights],
                                          outputs)
                masks = iter(masks)
                for w in targets:
                    w.apply_masks([next(masks) for _ in w.pruned_weights], step)

            self._compiled[targets] = one_graph_call(update)
        return self._compiled[targets]

    def _new_masks(self, targets, values):
        """NumPy side of an update: boolean masks for every pruned weight of `targets`, then the step.

        Pruned entries are already zero in the weights (see `wrapper.KeepPruned`), so the
        scores need no mask and pruned weights stay pruned.
        """
        step, layer_sparsities, global_sparsity = self._pending
        values = iter(values)
        per_wrapper = [[next(values) for _ in w.pruned_weights] for w in targets]
        masks = [m for w, sparsity, v in zip(targets, layer_sparsities, per_wrapper) for m in w.compute_masks(sparsity, v)]
        if global_sparsity is not None:
            scores = [MAGNITUDE.entry_scores(v) for layer_values in per_wrapper[len(layer_sparsities):]
                      for v in layer_values]
            first = self.global_scoped[0]
            masks += masks_lib.threshold_masks(scores, global_sparsity, first.granularity, self._global_axes,
                                               max_sparsity=first.max_layer_sparsity)
        return [*masks, np.asarray(step, dtype=np.int64)]

    def reapply_masks(self):
        """Zeroes the pruned weights again, e.g. after the optimizer swapped in averaged (EMA) weights."""
        self.sync_state()
        for w in (*self.layer_scoped, *self.global_scoped):
            w.apply_masks([m.value for m in w.masks], w.pruning_step.value)

    def shortfalls(self, last_step):
        """Why a run ending at `last_step` leaves layers short of their final sparsity, one line per schedule.

        Empty when every schedule reaches its final sparsity (N:M layers reach their m/n at step 1).
        """
        short = {}
        for w in (*self.layer_scoped, *self.global_scoped):
            short.setdefault(mask_schedule(w), []).append(w)
        lines = []
        for schedule, wrappers in short.items():
            updates = schedule.updates_until(last_step)
            reached = schedule.sparsity_at(updates[-1]) if updates else 0.0
            if reached < schedule.final_sparsity - 1e-9:
                lines.append(_shortfall_line(schedule, updates, [w.layer.name for w in wrappers], last_step))
        return lines


def saved_step(wrappers):
    """Training steps taken, as stored in built `wrappers` (-1 before the first fit reads as 0)."""
    return max(0, *(int(w.pruning_step.numpy()) for w in wrappers if w.built))


def _shortfall_line(schedule, updates, layer_names, last_step):
    names = ", ".join(layer_names[:4]) + (f" and {len(layer_names) - 4} more" if len(layer_names) > 4 else "")
    if updates:
        reached, final = schedule.sparsity_at(updates[-1]), schedule.final_sparsity
        digits = 3 if f"{reached:.3g}" != f"{final:.3g}" else 6  # "0.299996 instead of 0.3", not "0.3 instead of 0.3"
        what = (f"runs {len(updates)} mask update(s), the last at step {updates[-1]}, and reaches sparsity "
                f"{reached:.{digits}g} instead of {final:.{digits}g}")
    else:
        what = "runs no mask update at all, so these layers stay dense"
    # Schedules written tfmot-style may have no begin_step, end_step or frequency: hint with what is known.
    begin_step, end_step, frequency = (getattr(schedule, name, None) for name in ("begin_step", "end_step", "frequency"))
    if not updates and begin_step is not None and begin_step > last_step:
        hint = f" Pruning begins at step {begin_step}: lower `begin_step` or train longer."
    elif frequency is not None and frequency > last_step:
        hint = f" `frequency`={frequency} exceeds the {last_step} steps of this run: lower it."
    elif end_step is not None:
        hint = (f" Train until step {end_step} or lower `end_step`, keeping end_step - begin_step a "
                "multiple of `frequency` (the first batch is step 1, as in tfmot).")
    else:
        hint = ""
    return f"Training ends at step {last_step}: {schedule!r} of {names} {what}.{hint}"


def _check_global_settings_agree(wrappers):
    """Global scope ranks all weights with one schedule and one granularity: they must be the same."""
    if not wrappers:
        return
    first = wrappers[0]
    for w in wrappers[1:]:
        for what, mine, theirs in (("pruning schedule", w.pruning_schedule, first.pruning_schedule),
                                   ("granularity", w.granularity, first.granularity),
                                   ("max_layer_sparsity", w.max_layer_sparsity, first.max_layer_sparsity)):
            if mine != theirs:
                raise ValueError(
                    f"scope='global' ranks the weights of all globally pruned layers together, so they must share "
                    f"one {what}, but '{w.layer.name}' has {mine!r} and '{first.layer.name}' has {theirs!r}. "
                    "Prune the model with a single prune_low_magnitude(model, ..., scope='global') call, or use "
                    "scope='layer' for layers with their own settings."
                )
