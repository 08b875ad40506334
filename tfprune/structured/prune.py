"""`prune_channels`: gradual structured pruning of whole channel groups during `fit`."""

import numbers
import warnings

import keras

from tfprune import schedules
from tfprune.criteria import importance as importance_lib
from tfprune.criteria.activations import channel_entropies
from tfprune.criteria.gradients import scoring_pass
from tfprune.graph.rebuild import copy_layer, rebuild, same_layer
from tfprune.layers.table import masked_roles
from tfprune.messages import first_names
from tfprune.apply import penalties as penalties_lib
from tfprune.structured.analysis import ChannelAnalysis
from tfprune.structured.controller import ChannelController, why_never_pruned
from tfprune.apply.wrapper import PruneChannels
from tfprune.selection import budget as budgets
from tfprune.selection.allocation import check_scope
from tfprune.validation import check_sparsity
from tfprune.apply.wrapper import pruning_wrappers


def prune_channels(model, pruning_schedule, importance="l2", scope="layer", round_to=None, ignored_layers=None,
                   max_sparsity=0.9, penalty=None, budget=None, copy=True):
    """Wraps `model` so that `fit` prunes whole channels (units, filters, attention heads) by a schedule.

    Channels that must stay aligned (see `channel_groups`) are pruned together. A pruned
    channel is exactly zero where it enters the next layers, so `shrink` turns the trained
    model into a physically smaller one with the same outputs.

    Args:
        model: a built Sequential or Functional model (it is copied, not modified).
        pruning_schedule: `ConstantSparsity` or `PolynomialDecay`; sparsity is the fraction of channels.
            None with a `penalty`: train with the penalty only, then `prune_groups_below`.
        importance: "l2" (norm of all weights coupled to a channel), "l1", "bn_scale" (|gamma| of the
            BatchNormalization on it), or a `tfprune.Importance` of your own.
        scope: "layer" (every set of coupled channels pruned to the sparsity) or "global" (one
            ranking across sets, each score divided by its set's mean).
        round_to: keep channel counts at multiples of this (SIMD kernels like multiples of 8 or 16). None:
            any count, but with a `LatencyBudget` the multiples its table was measured at
            (`LatencyTable.measure(round_to="auto")` measures what the device prefers; pass 1 for any count).
        ignored_layers: layers (or names) whose channels are kept.
        max_sparsity: the most any set of coupled channels is pruned, in (0, 1).
        penalty: `tfprune.GroupLasso(strength, warmup_steps)` to add a group-lasso loss over the
            same channel groups during `fit`, or None.
        budget: `tfprune.FlopsBudget(ratio)` or `tfprune.ParamsBudget(ratio)`: how far to prune, as a
            cost, instead of a sparsity. The schedule then says when: at each update the model is
            pruned s(t) / s(end) of the way from dense to the budget (`PolynomialDecay(0, 0.5, ...)`
            reaches the budget at its end_step), each set keeping the channel count that
            `tfprune.selection.budget.allocate_to_budget` chooses (`scope` is not used).
        copy: False wraps your model's own layers instead of copies, sharing them and their weights
            (for layers that cannot be re-created from their config); then `shrink(model, copy=False)`.

    Returns:
        The wrapped copy. Train it with `callbacks=[tfprune.UpdatePruningStep()]`, then
        `tfprune.shrink(model)`.

    Example:

    ```python
    pruned = tfprune.prune_channels(model, tfprune.PolynomialDecay(0.0, 0.5, 0, 1000, frequency=100))
    pruned.compile(...)
    pruned.fit(x, y, epochs=5, callbacks=[tfprune.UpdatePruningStep()])
    small = tfprune.shrink(pruned)
    ```
    """
    settings = _checked_settings(pruning_schedule, importance, scope, round_to, max_sparsity, penalty, budget)
    if pruning_wrappers(model):
        raise ValueError(
            f"Model '{model.name}' is already pruned. Channel pruning starts from a plain model: "
            "tfprune.strip_pruning(model) first."
        )
    analysis = ChannelAnalysis(model, ignored_layers, assume_pruned=True)
    prunable = analysis.removable_roots()
    _warn_about_blocked_groups(analysis, prunable)
    if not prunable:
        raise ValueError(
            f"Model '{model.name}' has no channel that prune_channels can remove: every channel is a model "
            "input or output, passes through a layer the channel analysis keeps whole, or cannot be made zero."
        )
    channel_sets = analysis.channel_sets(prunable)
    _warn_about_sets_never_pruned(channel_sets, settings)
    masked = {id(layer) for channel_set in channel_sets for layer, _, _ in _masked_members(channel_set)}
    gate_roles = _gate_roles(channel_sets) if settings["penalty"] is not None and settings["penalty"].gated else {}

    keep = copy_layer if copy else same_layer

    def replace(layer):
        if id(layer) not in masked:
            return keep(layer)
        return PruneChannels(keep(layer), **settings, ignored_layers=analysis.ignored_names,
                             gate_roles=sorted(gate_roles.get(id(layer), ())))

    return rebuild(model, replace, copy=copy)


def _masked_members(channel_set):
    """The members of a set with a weight that channel pruning zeroes along the set's channels."""
    return [(layer, role, indices) for layer, role, indices in channel_set.members if role in masked_roles(layer)]


def _gate_roles(channel_sets):
    """{id(layer): roles} that carry L0 gates: in each set, its normalization layer if it has one, else its
    one masked member (a gate on a Conv before a BatchNormalization would be normalized away)."""
    roles, skipped = {}, []
    for channel_set in channel_sets:
        gateable = _masked_members(channel_set)
        normalizing = [member for member in gateable if member[1] == "channel"]
        gateable = normalizing or gateable
        if len(gateable) == 1 and gateable[0][2].shape[1] == 1:
            roles.setdefault(id(gateable[0][0]), set()).add(gateable[0][1])
        else:
            skipped += [layer.name for layer, _, _ in gateable]
    if skipped:
        warnings.warn(
            "L0 gates need one gated layer per set of coupled channels; channels shared by several (residual "
            f"connections, stacked BatchNorms) get no gate: {sorted(set(skipped))[:6]}.", stacklevel=4)
    return roles


def _checked_settings(pruning_schedule, importance, scope, round_to, max_sparsity, penalty, budget):
    penalty, budget = penalties_lib.get(penalty), budgets.get(budget)
    if pruning_schedule is None and penalty is None and budget is None:
        raise ValueError("prune_channels needs a pruning_schedule, a penalty or a budget; got none of them.")
    if pruning_schedule is not None and not isinstance(pruning_schedule, schedules.PruningSchedule):
        raise ValueError(
            "`pruning_schedule` must be a tfprune PruningSchedule such as ConstantSparsity or PolynomialDecay, "
            f"got {type(pruning_schedule).__name__}."
        )
    check_scope(scope)
    if round_to is not None and (isinstance(round_to, bool) or not isinstance(round_to, numbers.Integral)
                                 or round_to < 1):
        raise ValueError(f"`round_to` must be a positive integer (e.g. 8) or None, got {round_to!r}.")
    check_sparsity("max_sparsity", max_sparsity, zero_allowed=False,
                   meaning="the most of a set of channels that may be pruned")
    if budget is not None and pruning_schedule is not None and pruning_schedule.final_sparsity == 0:
        raise ValueError("With a budget the schedule says when to prune, as the fraction s(t) / s(end) of the way "
                         "to the budget: give it a final sparsity above 0, e.g. PolynomialDecay(0, 0.5, ...).")
    if budget is None and pruning_schedule is not None and pruning_schedule.final_sparsity > max_sparsity:
        raise ValueError(
            f"The schedule's final sparsity {pruning_schedule.final_sparsity:g} exceeds max_sparsity="
            f"{max_sparsity:g}, the most of any set of channels that may be pruned: raise max_sparsity or lower "
            "the target."
        )
    importance = importance_lib.get(importance)
    if importance.needs_gradients and keras.backend.backend() not in ("tensorflow", "jax", "torch"):
        raise ValueError(
            f"{type(importance).__name__} importance records gradients during fit on the TensorFlow, JAX and torch "
            f"backends only (this is {keras.backend.backend()}); use importance='l2' or 'l1' here."
        )
    if importance.needs_activations and pruning_schedule is not None:
        raise ValueError(f"{type(importance).__name__} scores channels by their outputs over data, in one shot: "
                         "tfprune.prune_to_budget(model, budget, importance='entropy', data=x).")
    if round_to is None and budget is not None and budget.kind == "latency":
        round_to = budget.table.round_to  # the multiples the table measured, which the device's kernels prefer
    return {"pruning_schedule": pruning_schedule, "importance": importance, "scope": scope,
            "round_to": None if round_to is None else int(round_to), "max_sparsity": float(max_sparsity),
            "penalty": penalty, "budget": budget}


def _warn_about_blocked_groups(analysis, prunable):
    blocked = {}
    for group in analysis.groups():
        if not group.zero:
            blocked.update(dict.fromkeys(group.layers))
    if blocked:
        names = first_names([repr(name) for name in blocked], shown=6)
        warnings.warn(
            f"Some channels of {names} are not pruned: masking their weights would not make them zero (an "
            "activation with f(0) != 0 such as sigmoid or softplus, or a normalization offset, lies on their "
            "path). Their channels stay.",
            stacklevel=3,
        )


def _warn_about_sets_never_pruned(channel_sets, settings):
    """Warns about the sets of coupled channels that round_to, max_sparsity or their size keep whole."""
    schedule = settings["pruning_schedule"]
    if schedule is None or schedule.final_sparsity == 0 or settings["budget"] is not None:
        return
    by_reason = {}
    for channel_set in channel_sets:
        reason = why_never_pruned(channel_set.size, schedule.final_sparsity, settings["scope"],
                                  settings["max_sparsity"], settings["round_to"])
        if reason:
            layer, role, _ = channel_set.members[0]
            by_reason.setdefault(reason, []).append(f"'{layer.name}' {role} ({channel_set.size})")
    if not by_reason:
        return
    count = sum(len(names) for names in by_reason.values())
    warnings.warn(
        f"prune_channels will prune none of the channels of {count} of {len(channel_sets)} sets of coupled "
        f"channels at the final sparsity {schedule.final_sparsity:g}: "
        + "; ".join(f"{first_names(names)}: {reason}" for reason, names in by_reason.items())
        + ". Choose a round_to that divides their sizes, raise max_sparsity or the sparsity, or accept them whole.",
        stacklevel=3,
    )


def prune_to_budget(model, budget, importance="l2", data=None, loss=None, round_to=None, ignored_layers=None,
                    max_sparsity=0.9, copy=True):
    """Channel-prunes `model` at once so that it fits `budget`, keeping the most important channels.

    Args:
        model: a built Sequential or Functional model (it is copied, not modified).
        budget: `tfprune.FlopsBudget(ratio)`, `tfprune.ParamsBudget(ratio)` or `tfprune.LatencyBudget`.
        importance: "l2", "l1", "bn_scale", "taylor", "entropy" or a `tfprune.Importance`.
        data: for "entropy", the images (`x` or `(x, y)`, arrays) whose outputs it reads; for an importance
            scored by gradients ("taylor"): `(x, y)` or a dataset of them, which one
            pass of `fit` at a learning rate of 0 runs over to record the scores (weights, BatchNorm
            statistics and steps are put back after; the returned model is left compiled with that
            zero learning rate: compile it again to fine-tune).
        loss: the loss of that pass; default the loss `model` was compiled with.
        round_to, ignored_layers, max_sparsity, copy: as in `prune_channels`.

    Returns:
        The masked model (`PruneChannels` wrappers): fine-tune it with `UpdatePruningStep`, or
        `tfprune.shrink` it right away.

    Raises:
        ValueError: if the budget cannot be reached (the error gives the lowest reachable cost), or a
            gradient-based importance has no data or loss.

    Example:

    ```python
    pruned = tfprune.prune_to_budget(model, tfprune.FlopsBudget(0.5), round_to=8)
    small = tfprune.shrink(pruned)
    tfprune.model_cost(small).flops / tfprune.model_cost(model).flops   # <= 0.5
    taylor = tfprune.prune_to_budget(model, tfprune.FlopsBudget(0.5), importance="taylor", data=(x[:512], y[:512]))
    ```
    """
    budget = budgets.get(budget)
    if budget is None:
        raise ValueError("prune_to_budget needs a budget, e.g. tfprune.FlopsBudget(0.5).")
    criterion = importance_lib.get(importance)
    loss = loss if loss is not None else getattr(model, "loss", None)
    if criterion.needs_gradients and (data is None or loss is None):
        raise ValueError(f"importance={importance!r} scores channels by gradients: give data=(x, y) (or a dataset) "
                         "to record them on, and loss=... unless the model is compiled with its loss.")
    if criterion.needs_activations and data is None:
        raise ValueError(f"importance={importance!r} scores channels by their outputs: give data=x (or (x, y)), "
                         "images to read them on.")
    pruned = prune_channels(model, None, importance, round_to=round_to, ignored_layers=ignored_layers,
                            max_sparsity=max_sparsity, budget=budget, copy=copy)
    if criterion.needs_gradients:
        _record_gradients(pruned, data, loss)
    controller = ChannelController(pruned)
    if criterion.needs_activations:
        producers = [w for w in controller.wrappers if "output" in w.channel_masks]
        controller.activation_scores = channel_entropies(pruned, producers, data, getattr(criterion, "bins", 32))
    controller.prune_to_budget(step=0)
    return pruned


def _record_gradients(pruned, data, loss):
    """One pass of `fit` over `data` at a learning rate of 0, in which the wrappers record their gradient-based
    scores; every other variable (weights, BatchNorm statistics, the step) is put back after."""
    recorders = {"taylor_sum", "taylor_batches"}
    scoring_pass(pruned, data, loss, keras.optimizers.SGD(0.0), keep=lambda variable: variable.name not in recorders)


def prune_groups_below(model, threshold):
    """Prunes, in a channel-pruned model, every channel group whose L2 norm is below `threshold`.

    The norm runs over every weight coupled to the group, the weights a `GroupLasso` penalty
    drives to zero. Every set of coupled channels keeps at least one. Returns the number of
    groups pruned; `shrink(model)` then removes them.

    Example:

    ```python
    pruned_count = tfprune.prune_groups_below(penalized, threshold=1e-2)
    small = tfprune.shrink(penalized)
    ```
    """
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not threshold >= 0:
        raise ValueError(f"`threshold` must be a number >= 0, got {threshold!r}.")
    return ChannelController(model).prune_below(float(threshold))


def fold_gates(model):
    """Folds the L0 gates of a channel-pruned model into its weights; closed gates become pruned groups.

    An open gate scales its channel's weights by its inference value; a closed one (z = 0) zeroes
    them, and its group is pruned, so `shrink(model)` then removes it. Returns the number of
    groups pruned.

    Example:

    ```python
    gated = tfprune.prune_channels(model, None, penalty=tfprune.L0Gates(1e-3))
    gated.fit(x, y, epochs=20, callbacks=[tfprune.UpdatePruningStep()])
    tfprune.fold_gates(gated)
    small = tfprune.shrink(gated)
    ```
    """
    return ChannelController(model).fold_gates()
