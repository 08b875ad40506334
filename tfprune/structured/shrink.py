"""`shrink`: rebuild a model without its zero channels, physically smaller and with the same outputs."""

from tfprune.graph import compat
from tfprune.graph.rebuild import copy_layer, rebuild, same_layer
from tfprune.layers.table import rule_for, why_nonzero
from tfprune.structured.analysis import ChannelAnalysis
from tfprune.structured.cost import latency_text, model_cost
from tfprune.apply.wrapper import pruning_wrappers


def shrink(model, ignored_layers=None, verbose=True, copy=True):
    """A smaller copy of `model` without the channel groups that are exactly zero.

    A group (see `channel_groups`) is removed when its channel is zero wherever
    it enters a weight: a Dense's units whose kernel column and bias are zero,
    a Conv's filters zeroed together with their BatchNormalization gamma and
    beta, an attention head whose value or output weights are zero. A channel
    that holds one constant instead (a zero channel through a sigmoid: 0.5)
    goes too where it enters only Dense layers and Convs with a 1x1 kernel or
    "valid" padding: what it added to every output moves into their bias (one
    is created if they have none). Layers are re-created from their configs
    with fewer units, filters or heads and the remaining weights copied, so the
    new model holds nothing of tfprune and computes the same outputs. `model`
    itself is left untouched.

    Args:
        model: a built Sequential or Functional model, plain or wrapped by
            `prune_low_magnitude` (its wrappers are stripped first).
        ignored_layers: layers (or names) whose channels must be kept.
        verbose: print parameters and FLOPs before and after (and the latency, predicted by the table of a
            `LatencyBudget` the model was pruned to).
        copy: False shares the unchanged layers with `model` instead of copying them (for a model
            pruned with `copy=False`, whose layers cannot be re-created from their config). Its
            wrappers are stripped with `strip_pruning(model, copy=False)`, which writes the pruned
            values into your layers: use the returned model, not `model`, afterwards.

    Returns:
        The smaller Keras model.

    Raises:
        ValueError: if no group is entirely zero, or the model is subclassed.

    Example:

    ```python
    small = tfprune.shrink(model)
    print(tfprune.model_cost(model), tfprune.model_cost(small))
    ```
    """
    budgets = {getattr(wrapper, "budget", None) for wrapper in pruning_wrappers(model)}
    table = next((budget.table for budget in budgets if getattr(budget, "kind", None) == "latency"), None)
    if pruning_wrappers(model):
        from tfprune.api import strip_pruning

        model = strip_pruning(model, copy=copy)
    analysis = ChannelAnalysis(model, ignored_layers, fold_constants=True)
    removed = analysis.removable_roots()
    if not removed:
        raise ValueError(_nothing_to_remove(analysis))
    pending = []
    unchanged = copy_layer if copy else same_layer

    def replace(layer):
        keep = analysis.keep_masks(layer, removed)
        smaller = _shrunk_layer(layer, keep, analysis.constants(layer, removed)) \
            if keep and not all(k.all() for k in keep.values()) else None
        if smaller is None:
            return unchanged(layer)
        new_layer, weights = smaller
        pending.append((new_layer, weights))
        return new_layer

    small = rebuild(model, replace, copy=copy)
    for layer, weights in pending:  # built by rebuild's call on the new, narrower inputs
        layer.set_weights(weights)
    if verbose:
        print(_summary(model, small, len(removed), table))
    return small


def _shrunk_layer(layer, keep, constants):
    """(a new unbuilt layer, its weights) with only the kept channels, or None if unchanged; `constants` (of
    the input channels, for a layer whose bias takes removed ones) go to its rule."""
    rule = rule_for(layer, compat.inbound_nodes(layer)[0])[0]
    shrunk = rule.shrink(layer, keep) if constants is None else rule.shrink(layer, keep, constants)
    if shrunk is None:
        return None
    config, weights = shrunk
    return type(layer).from_config(config), weights


def _nothing_to_remove(analysis):
    groups = analysis.groups()
    if not groups:
        return ("shrink found no channel that may be removed: every channel is a model input or output, or "
                "belongs to a layer the channel analysis keeps whole.")
    found = f"shrink found no channel group that is entirely zero among {len(groups)} prunable ones"
    revived = {}
    for group, operation, consumer in analysis.revived_groups():
        revived.setdefault((operation, consumer), []).append(group)
    if revived:
        return (
            f"{found}. "
            + " ".join(f"{_described(groups_at)} are zeroed but become non-zero at '{operation.name}', where "
                       f"{why_nonzero(operation)}{_entering(consumer)}."
                       for (operation, consumer), groups_at in revived.items())
            + " Removing channels that are not zero where they enter the next weight would change the outputs; a "
            "constant channel goes only where it enters Dense layers, or Convs with a 1x1 kernel or \"valid\" "
            "padding, directly (not padded, normalized, added or multiplied first; the same constant in every call "
            "of a shared layer): shrink moves it into their bias. Zero channels after such a layer instead, or use a function with f(0) = 0 there (relu, gelu, "
            "silu, tanh); zero a normalization's gamma and beta with its channels."
        )
    return (
        f"{found}, so there is nothing to remove. A channel is removed when it is exactly zero wherever it enters "
        "a weight: zero its producing kernel column and bias (and BatchNormalization gamma and beta) together, "
        "e.g. by channel pruning, before shrinking. Unstructured sparsity from prune_low_magnitude does not "
        "remove channels."
    )


def _entering(consumer):
    if consumer is None:
        return ""
    return f", and reach '{consumer.name}' ({type(consumer).__name__}) as no constant its bias can take"


def _described(groups, shown=8):
    """"Channels 1, 4 of 'dense' (output)": each group by its first member, gathered per layer and role."""
    indices = {}
    for layer, role, members in (group.members[0] for group in groups):
        indices.setdefault((layer.name, role), []).extend(members.tolist())
    parts = [f"{', '.join(map(str, found[:shown]))}{' ...' if len(found) > shown else ''} of '{name}' ({role})"
             for (name, role), found in indices.items()]
    return "Channels " + " and ".join(parts)


def _summary(before_model, after_model, groups, table=None):
    before, after = model_cost(before_model, table), model_cost(after_model, table)

    def ratio(a, b):
        return f"{a / b:.3f}x" if b else "n/a"

    latency = "" if table is None else (
        f", predicted latency {latency_text(before.latency, table.unit)} -> "
        f"{latency_text(after.latency, table.unit)} ({ratio(after.latency, before.latency)}, {table.key['device']})")
    return (
        f"shrink: removed {groups} channel groups; parameters {before.params:,} -> {after.params:,} "
        f"({ratio(after.params, before.params)}), FLOPs {before.flops:,} -> {after.flops:,} "
        f"({ratio(after.flops, before.flops)}){latency}"
    )

