"""Budgets (what a pruned model may cost) and the allocation that meets one.

`FlopsBudget(0.5)` asks for at most half the dense model's FLOPs, `ParamsBudget(0.3)` for 30%
of its parameters. `allocate_to_budget` chooses how many channel groups each set keeps so that
the model fits, losing as little importance as it can.

The search is greedy, as NetAdapt's is: from the current configuration it repeatedly takes
the move that loses the least importance per unit of cost saved, a move being one set giving
up its next 1 to `LOOKAHEAD` allowed counts of lowest-scored groups (allowed: multiples of
`round_to`, within `max_sparsity`). Looking a few counts ahead crosses cost plateaus (a
latency that only drops at the next SIMD tile). Greedy rather than a knapsack: a layer's
cost depends on two sets at once (its input and its output channels), which a knapsack over
independent items cannot express (HALP fixes the neighbours and solves again); each greedy
move is priced by the exact joint change of `ChannelCost`. When a move can reach the budget,
the one that does so losing least is taken, so the result lands close to the budget.

Importance is compared across sets after dividing each set's scores by their mean, as channel
pruning's global scope does.

Example:

```python
pruned = tfprune.prune_to_budget(model, tfprune.FlopsBudget(0.5))
small = tfprune.shrink(pruned)   # about half the FLOPs
```
"""

import numbers

import keras
import numpy as np

from tfprune.selection.allocation import most_prunable, rounded_count
from tfprune.structured.configurable import Configurable

LOOKAHEAD = 4  # allowed counts a move may skip ahead in one set


class Budget(Configurable):
    """What a pruned model may cost, as a fraction of the dense model's cost of one `kind`."""

    kind = None

    def __init__(self, ratio):
        if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0 < ratio <= 1:
            raise ValueError(f"{type(self).__name__} takes a ratio of the dense model's {self.kind} in (0, 1], "
                             f"e.g. 0.5; got {ratio!r}.")
        self.ratio = float(ratio)

    def target(self, dense_cost):
        """The most the pruned model may cost, given the dense model's cost."""
        return self.ratio * dense_cost

    def get_config(self):
        return {"ratio": self.ratio}

    def __repr__(self):
        return f"{type(self).__name__}({self.ratio:g})"


@keras.saving.register_keras_serializable(package="tfprune")
class FlopsBudget(Budget):
    """At most `ratio` of the dense model's FLOPs (as `tfprune.model_cost` counts them).

    Example:

    >>> pruned = tfprune.prune_to_budget(model, tfprune.FlopsBudget(0.5))
    """

    kind = "FLOPs"


@keras.saving.register_keras_serializable(package="tfprune")
class ParamsBudget(Budget):
    """At most `ratio` of the dense model's parameters.

    Example:

    >>> pruned = tfprune.prune_to_budget(model, tfprune.ParamsBudget(0.3))
    """

    kind = "parameters"


@keras.saving.register_keras_serializable(package="tfprune")
class LatencyBudget(Budget):
    """At most `ratio` of the dense model's latency (or `ms` milliseconds), as a `LatencyTable` predicts it.

    The table (`tfprune.LatencyTable.measure(model, device)`, or the path of a saved one) holds what
    each layer costs on the device at each channel count; pruning searches on it. A model saved
    during gradual pruning refers to the table by its path.

    Example:

    >>> table = tfprune.LatencyTable.measure(model, tfprune.deploy.LocalLiteRT())   # round_to="auto"
    >>> pruned = tfprune.prune_to_budget(model, tfprune.LatencyBudget(0.5, table=table))  # at the table's multiples
    """

    kind = "latency"

    def __init__(self, ratio=None, ms=None, table=None):
        if (ratio is None) == (ms is None):
            raise ValueError("LatencyBudget takes a ratio of the dense model's latency (e.g. 0.5) or ms=..., one of "
                             f"them; got ratio={ratio!r}, ms={ms!r}.")
        if ratio is not None:
            super().__init__(ratio)
        elif isinstance(ms, bool) or not isinstance(ms, numbers.Real) or not ms > 0:
            raise ValueError(f"LatencyBudget's ms must be a positive number of milliseconds, got {ms!r}.")
        else:
            self.ratio = None
        self.ms = None if ms is None else float(ms)
        if table is None:
            raise ValueError("LatencyBudget needs the latency table to plan with: table=tfprune.LatencyTable.measure("
                             "model, device), or the path of a saved one.")
        from tfprune.structured.latency_table import LatencyTable  # tables are measured on structured models

        self.table = table if isinstance(table, LatencyTable) else LatencyTable.load(table)

    def target(self, dense_cost):
        if self.ms is None:
            return self.ratio * dense_cost
        if self.table.unit != "ms":
            raise ValueError(f"LatencyBudget(ms={self.ms:g}) needs a table measured in ms; this one counts "
                             f"{self.table.unit}: give a ratio instead.")
        return self.ms

    def get_config(self):
        if self.table.path is None:
            raise ValueError("A LatencyBudget is saved with the path of its table: save the table first "
                             "(table.save(path)) or measure it with cache=True.")
        return {"ratio": self.ratio, "ms": self.ms, "table": self.table.path}

    def __eq__(self, other):  # tables read from one file are one table: every wrapper of a loaded model reads it
        return type(self) is type(other) and (self.ratio, self.ms, self._table_id()) == (
            other.ratio, other.ms, other._table_id())

    def _table_id(self):
        return self.table.path or id(self.table)

    def __hash__(self):
        return hash((type(self).__name__, self.ratio, self.ms))

    def __repr__(self):
        return f"LatencyBudget({f'{self.ratio:g}' if self.ms is None else f'ms={self.ms:g}'})"


def get(identifier):
    """A `Budget` from an instance, a serialized dict or None."""
    if identifier is None or isinstance(identifier, Budget):
        return identifier
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    raise ValueError(f"`budget` must be a tfprune budget such as tfprune.FlopsBudget(0.5), got {identifier!r}.")


def serialize(budget):
    return None if budget is None else keras.saving.serialize_keras_object(budget)


def allocate_to_budget(scores, cost, target, max_sparsity=None, round_to=None, what="budget"):
    """1-D boolean keep-masks, one per channel set, for a model that costs at most `target`.

    Args:
        scores: one 1-D array of group scores per set (-inf for groups already pruned, which stay
            pruned); None for a set kept whole.
        cost: a `ChannelCost` of the same sets.
        target: the most the model may cost, in `cost`'s unit.
        max_sparsity: the most of any set's groups that may be pruned; None: all but one.
        round_to: every set keeps a multiple of this many groups (or all of them).
        what: how the budget is named in an error.

    Raises:
        ValueError: if even the smallest allowed configuration costs more than `target`; it gives
            the lowest reachable cost.
    """
    sets = [_RankedSet(s, size, max_sparsity, round_to) for s, size in zip(scores, cost.sizes)]
    kept = np.array([s.size - s.pruned for s in sets])
    smallest = np.array([s.size - s.counts[-1] for s in sets])
    lowest = cost.total(smallest)
    if lowest > target * (1 + 1e-9):
        raise ValueError(
            f"The {what} ({target / cost.dense:.3g} of the dense model) cannot be reached: pruning every set of "
            f"channels as far as max_sparsity={max_sparsity} and round_to={round_to} allow (ignored layers, inputs "
            f"and outputs kept) leaves {lowest / cost.dense:.3g} of it. Ask for at least that, raise max_sparsity "
            "or ignore fewer layers.")
    current = cost.total(kept)
    neighbours = cost.neighbours
    moves = [s.moves(cost, kept, i) for i, s in enumerate(sets)]
    while current > target * (1 + 1e-9):
        candidates = [move for options in moves for move in options]
        finishing = [move for move in candidates if current - move[2] <= target]
        index, count, saving, _ = (min(finishing, key=lambda m: (m[3] * m[2], -m[2])) if finishing
                                   else min(candidates, key=lambda m: (m[3], -m[2])))
        sets[index].pruned = count
        kept[index] = sets[index].size - count
        current -= saving
        for other in neighbours[index]:
            moves[other] = sets[other].moves(cost, kept, other)
    return [s.keep() for s in sets]


class _RankedSet:
    """One set's groups in pruning order, the pruned counts it may take and what each costs in importance."""

    def __init__(self, scores, size, max_sparsity, round_to):
        self.size = int(size)
        if scores is None:
            self.order, self.counts, self.pruned = None, [0], 0
            return
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        scores = np.where(np.isnan(scores), np.inf, scores)
        self.order = np.argsort(scores, kind="stable")
        ranked = scores[self.order]
        already = int(np.isneginf(ranked).sum())
        live = ranked[already:][np.isfinite(ranked[already:])]
        scale = live.mean() if live.size and live.mean() > 0 else 1.0
        self._loss = np.concatenate([[0.0], np.cumsum(np.where(np.isfinite(ranked), ranked, 0.0) / scale)])
        self.counts = [c for c in range(most_prunable(self.size, max_sparsity) + 1)
                       if rounded_count(self.size, c, round_to) == c]
        self.pruned = next((c for c in self.counts if c >= already), self.counts[-1])

    def moves(self, cost, kept, index):
        """[(set index, pruned count, cost saved, importance lost per cost saved)] for the next counts."""
        if self.order is None:
            return []
        following = [c for c in self.counts if c > self.pruned][:LOOKAHEAD]
        found = []
        for count in following:
            saving = cost.saving(kept, index, self.size - count)
            if saving > 0:
                found.append((index, count, saving, (self._loss[count] - self._loss[self.pruned]) / saving))
        return found

    def keep(self):
        keep = np.ones(self.size, bool)
        if self.order is not None:
            keep[self.order[:self.pruned]] = False
        return keep
