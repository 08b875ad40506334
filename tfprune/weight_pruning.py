"""Weight masks of a model's `PruneLowMagnitude` wrappers: the weight part of `PruningController`.

Layer-scoped wrappers are pruned each on its own schedule; globally scoped ones are ranked
together (one threshold) on the schedule they share; ERK-scoped ones share a schedule too, and
each of their weights is pruned on its own to its share of the target
(`selection.distributions.erk_sparsities`); those with a `DynamicSparsity` schedule hold their
sparsity and move their masks (`dynamic_sparsity.Rewiring`). Every update runs as one compiled call
that reads the weights, computes the masks on the host (`masks.threshold_masks`, which
allocates with `selection.allocation`) and writes them back.
"""

import warnings

import numpy as np

from tfprune import masks as masks_lib
from tfprune import schedules
from tfprune.backend_calls import host_call, one_graph_call, step_dtype
from tfprune.apply.gradient_tap import GradientTap, training_optimizer
from tfprune.dynamic_sparsity import DynamicSparsity, Rewiring
from tfprune.selection.distributions import erk_sparsities
from tfprune.stateless import sync_variables

# N:M masks are computed once, at step 1 (the first training batch), and then held, whatever the
# wrapper's schedule says, as in tfmot (`pruning_impl.Pruning.conditional_mask_update`). Its sparsity
# is not used: an N:M update always zeroes m of every n weights.
M_BY_N_AT_STEP_1 = schedules.ConstantSparsity(0.0, begin_step=1, end_step=1, frequency=1)


def mask_schedule(wrapper):
    """The schedule that decides when `wrapper`'s masks update: its own, or `M_BY_N_AT_STEP_1` for N:M."""
    return M_BY_N_AT_STEP_1 if wrapper.granularity.m_by_n else wrapper.pruning_schedule


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


def layer_masks(wrapper, sparsity, scores):
    """New masks for one `PruneLowMagnitude` wrapper alone from the `scores` of its weights' entries, at `sparsity`
    (ignored for N:M): one for all its weights, or a list with one per weight.
    """
    if wrapper.granularity.m_by_n:
        m, n = wrapper.granularity.m_by_n
        return [masks_lib.m_by_n_mask(s, m, n, axes) for s, axes in zip(scores, wrapper.weight_axes)]
    per_weight = sparsity if isinstance(sparsity, (list, tuple)) else [sparsity] * len(scores)
    return masks_lib.threshold_masks(scores, 0.0, wrapper.granularity, wrapper.weight_axes, scope="layer",
                                     overrides=dict(enumerate(per_weight)))


class WeightPruning:
    """Updates the weight masks of `wrappers` (a model's `PruneLowMagnitude` wrappers).

    Created by `PruningController`, which drives it with the channel part.
    """

    def __init__(self, model, wrappers):
        self.model = model
        # Wrappers of weightless layers (Dropout, Flatten, ... as tfmot wraps them) only carry the step.
        masked = [w for w in wrappers if w.masks]
        dynamic = [w for w in masked if isinstance(w.pruning_schedule, DynamicSparsity)]
        self.rewiring = Rewiring(model, dynamic) if dynamic else None
        self.masked = masked
        masked = [w for w in masked if w not in dynamic]
        self.layer_scoped = [w for w in masked if w.scope == "layer"]
        self.global_scoped = tuple(w for w in masked if w.scope == "global")
        self.erk_scoped = tuple(w for w in masked if w.scope == "erk")
        _check_global_settings_agree(self.global_scoped)
        _check_global_settings_agree(self.erk_scoped, scope="erk")
        # Layers usually share one schedule: it is asked once per step, not once per layer.
        self._layer_scoped_by_schedule = {}
        for w in self.layer_scoped:
            self._layer_scoped_by_schedule.setdefault(mask_schedule(w), []).append(w)
        self._compiled = {}
        self._plan = None  # (step, {wrapper: sparsity} pruned alone, sparsity of the ranked ones) being run
        self._taps = {}  # {statistic: GradientTap} of the criteria that read training gradients, during a fit
        self._warned_empty = False

    def update(self, step, update_masks=True):
        """Recomputes masks where a schedule says so at `step`; returns True if any changed."""
        if not update_masks:
            return False
        alone = {}
        for schedule, wrappers in self._layer_scoped_by_schedule.items():
            should_update, sparsity = schedule.decision(step)
            if should_update:
                alone.update(dict.fromkeys(wrappers, sparsity))
        ranked, ranked_sparsity = (), None
        if self.global_scoped:
            should_update, sparsity = mask_schedule(self.global_scoped[0]).decision(step)
            if should_update:
                ranked, ranked_sparsity = self.global_scoped, sparsity
        if self.erk_scoped:
            should_update, sparsity = mask_schedule(self.erk_scoped[0]).decision(step)
            if should_update:
                alone.update(erk_targets(self.erk_scoped, sparsity))
        if not alone and not ranked:
            return False
        return self._run(step, alone, ranked, ranked_sparsity)

    def finish_step(self, step):
        """After the batch of `step`: moves the masks of dynamic sparse training; returns True if it did."""
        return self.rewiring is not None and self.rewiring.finish_step(step)

    def set_step_driven(self, driven):
        """A `fit` (or a custom loop driving `UpdatePruningStep`) starts (True) or ends (False): the taps of the
        criteria that read training gradients are installed on the model's optimizer, or removed."""
        if self.rewiring is not None:
            self.rewiring.set_step_driven(driven)
        for tap in self._taps.values():
            tap.remove()
        self._taps, self._compiled = {}, {}
        if not driven:
            return
        by_statistic = {}
        for w in self.masked:
            fixed = isinstance(w.pruning_schedule, schedules.FixedMasks)  # set once: nothing to record for
            dynamic = self.rewiring is not None and w in self.rewiring.wrappers
            if w.importance.statistic is not None and not fixed and not dynamic:
                by_statistic.setdefault(w.importance.statistic, []).extend(w.pruned_weights)
        for statistic, variables in by_statistic.items():
            optimizer = training_optimizer(self.model, variables, "The pruning criterion scores weights by the "
                                                                  "training gradients")
            self._taps[statistic] = GradientTap(optimizer, variables, statistic)

    def prune_to(self, sparsity, *, step, overrides=None, scope=None):
        """Prunes every masked weight to `sparsity` now; see `PruningController.prune_to`."""
        overrides = overrides or {}
        own = {w: overrides.get(w, overrides.get(w.layer.name)) for w in self.masked}
        ranked = tuple(w for w in self.masked if (scope or w.scope) == "global" and own[w] is None
                       and not w.granularity.m_by_n)
        _check_global_settings_agree(ranked, ("granularity", "max_layer_sparsity", "importance"))
        spread = tuple(w for w in self.masked if (scope or w.scope) == "erk" and own[w] is None
                       and not w.granularity.m_by_n and w not in ranked)
        _check_global_settings_agree(spread, ("granularity", "max_layer_sparsity"), scope="erk")
        alone = {w: sparsity if own[w] is None else own[w] for w in self.masked if w not in ranked + spread}
        alone.update(erk_targets(spread, sparsity))
        self._run(step, alone, ranked, sparsity)

    def _run(self, step, alone, ranked, ranked_sparsity):
        unrecorded = sorted({type(w.importance).__name__ for w in (*alone, *ranked)
                             if w.importance.statistic is not None and w.importance.statistic not in self._taps})
        if unrecorded:
            raise ValueError(f"{', '.join(unrecorded)} scores weights by the training gradients, which are recorded "
                             "during fit with UpdatePruningStep: the masks can update only then. To prune at once, use "
                             "tfprune.prune_once(model, sparsity, importance, data=(x, y)) on the unpruned model.")
        empty = sorted({w.importance.statistic for w in (*alone, *ranked)} - {None}
                       - {statistic for statistic, tap in self._taps.items() if tap.steps()})
        if empty:
            if not self._warned_empty:
                self._warned_empty = True
                warnings.warn(f"The masks do not update at step {step}: their criterion reads the training gradients "
                              "and no step has run since the last update (pruning on the first batch of a fit). "
                              "Begin pruning later (begin_step >= 2).", stacklevel=4)
            return False
        self._plan = (step, alone, ranked_sparsity)
        sync_variables(self.model)
        self._update_call(tuple(alone) + ranked, len(alone))()
        self.restart_statistics()
        return True

    def _update_call(self, targets, alone_count):
        """One compiled call, without arguments, that updates the masks of a set of wrappers.

        It reads the weights, computes masks on the host (`_new_masks`, which takes the step and
        sparsities from `self._plan`) and applies them. Compiled once per set.
        """
        key = (targets, alone_count)
        if key not in self._compiled:
            weights = [v for w in targets for v in w.pruned_weights]
            outputs = [(v.shape, "bool") for v in weights] + [((), step_dtype())]
            taps = list(self._taps.items())

            def update():
                statistics = [tensor for _, tap in taps for tensor in tap.tensors()]
                *masks, step = host_call(
                    lambda *values: self._new_masks(targets, alone_count, values[:len(weights)],
                                                    _by_variable(taps, values[len(weights):])),
                    [v.value for v in weights] + statistics, outputs)
                masks = iter(masks)
                for w in targets:
                    w.apply_masks([next(masks) for _ in w.pruned_weights], step)

            self._compiled[key] = one_graph_call(update)
        return self._compiled[key]

    def _new_masks(self, targets, alone_count, values, statistics):
        """NumPy side of an update: boolean masks for every pruned weight of `targets`, then the step.

        The first `alone_count` targets are pruned each on its own, the rest ranked together, by
        each wrapper's importance (`statistics`: {id(variable): the statistic of its training
        gradients} for criteria that read them). Pruned entries are already zero in the weights
        (see `wrapper.KeepPruned`); they are scored below every kept entry, so they stay pruned.
        """
        step, alone, ranked_sparsity = self._plan
        values = iter(values)
        scores = [[_entry_scores(w, v, next(values), statistics) for v in w.pruned_weights] for w in targets]
        masks = [m for w, s in zip(targets[:alone_count], scores) for m in layer_masks(w, alone[w], s)]
        masks += ranked_masks(targets[alone_count:], scores[alone_count:], ranked_sparsity)
        return [*masks, np.asarray(step, dtype=step_dtype())]

    def restart_statistics(self):
        """After a mask update: OBD's squared gradients are the mean of the batches since the last one (of every
        layer: layers on schedules of their own share the count)."""
        if "squares" in self._taps:
            self._taps["squares"].reset()

    def shortfalls(self, last_step):
        """Why a run ending at `last_step` leaves layers short of their final sparsity, one line per schedule.

        Empty when every schedule reaches its final sparsity (N:M layers reach their m/n at step 1).
        """
        by_schedule = {schedule: [w.layer.name for w in wrappers]
                       for schedule, wrappers in self._layer_scoped_by_schedule.items()}
        for shared in (self.global_scoped, self.erk_scoped):
            if shared:
                by_schedule.setdefault(mask_schedule(shared[0]), []).extend(w.layer.name for w in shared)
        lines = (schedule.shortfall(names, last_step) for schedule, names in by_schedule.items())
        return [line for line in lines if line]


_SHARED_BY_GLOBAL_SCOPE = {"pruning schedule": "pruning_schedule", "granularity": "granularity",
                           "max_layer_sparsity": "max_layer_sparsity", "importance": "importance"}


def _entry_scores(wrapper, variable, value, statistics):
    """The scores of one pruned weight's entries by `wrapper`'s importance; its pruned entries (zero) below all."""
    scores = wrapper.importance.entry_scores(value, wrapper.layer, variable.name, statistics.get(id(variable)))
    return np.where(value != 0, scores, -np.inf) if wrapper.importance.statistic is not None else scores


def _by_variable(taps, values):
    """{id(variable): its statistic} from the flat `values` of `taps` (each: its arrays, then its step count)."""
    statistics, values = {}, iter(values)
    for _, tap in taps:
        arrays = [np.asarray(next(values)) for _ in tap.variables]
        statistics.update(zip(map(id, tap.variables), tap.finished(arrays, int(next(values)))))
    return statistics


def ranked_masks(wrappers, scores, sparsity):
    """Masks for the weights of globally scoped `wrappers` from their `scores` (a list per wrapper), ranked
    together to `sparsity`, each weight held at the wrappers' `max_layer_sparsity`."""
    if not wrappers:
        return []
    first = wrappers[0]
    return masks_lib.threshold_masks([s for per_weight in scores for s in per_weight], sparsity, first.granularity,
                                     [a for w in wrappers for a in w.weight_axes], max_sparsity=first.max_layer_sparsity)


def scored_masks(wrappers, scores, sparsity, scope):
    """Masks for every weight of `wrappers` from `scores` (a list per wrapper) at `sparsity`, spread by `scope`
    ("layer", "global" or "erk"): a flat list in the wrappers' order, as `apply_masks` takes them per wrapper."""
    if scope == "global":
        return ranked_masks(wrappers, scores, sparsity)
    targets = erk_targets(wrappers, sparsity) if scope == "erk" else dict.fromkeys(wrappers, sparsity)
    return [m for w, s in zip(wrappers, scores) for m in layer_masks(w, targets[w], s)]


def apply_scored_masks(wrappers, scores, sparsity, scope, step=0):
    """Sets the masks of `wrappers` to keep the highest `scores` (one array per pruned weight, in order) at
    `sparsity`, spread by `scope`, recording `step`: how pruning at initialization and sparse training start."""
    scores = iter(scores)
    keep = iter(scored_masks(wrappers, [[next(scores) for _ in w.pruned_weights] for w in wrappers], sparsity, scope))
    for w in wrappers:
        w.apply_masks([next(keep) for _ in w.pruned_weights], step)


def erk_targets(wrappers, sparsity):
    """{wrapper: [sparsity per pruned weight]} spreading `sparsity` over all their weights by ERK."""
    shapes = [tuple(v.shape) for w in wrappers for v in w.pruned_weights]
    cap = wrappers[0].max_layer_sparsity if wrappers else None
    per_weight = iter(erk_sparsities(shapes, sparsity, cap) if shapes else [])
    return {w: [next(per_weight) for _ in w.pruned_weights] for w in wrappers}


def _check_global_settings_agree(wrappers, settings=tuple(_SHARED_BY_GLOBAL_SCOPE), scope="global"):
    """Global (and ERK) scope spreads one target over all weights with one schedule and one granularity: they
    must be the same."""
    if not wrappers:
        return
    first = wrappers[0]
    for w in wrappers[1:]:
        for what in settings:
            mine, theirs = (getattr(x, _SHARED_BY_GLOBAL_SCOPE[what]) for x in (w, first))
            if mine != theirs:
                raise ValueError(
                    f"scope='{scope}' spreads one target over the weights of all its layers together, so they must "
                    f"share one {what}, but '{w.layer.name}' has {mine!r} and '{first.layer.name}' has {theirs!r}. "
                    f"Prune the model with a single prune_low_magnitude(model, ..., scope='{scope}') call, or use "
                    "scope='layer' for layers with their own settings."
                )
