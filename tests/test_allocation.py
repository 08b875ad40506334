"""The one allocation: counts (tfmot's rounding, caps, round_to, overrides) and which units go."""

import doctest

import numpy as np
import pytest

from tfprune.selection import allocation
from tfprune.selection.allocation import allocate, keep_largest, pruned_count


def _pruned(keep):
    return [int(k.size - k.sum()) for k in keep]


def test_docstring_examples_hold():
    assert doctest.testmod(allocation).failed == 0


def test_layer_scope_prunes_each_group_on_its_own_with_tfmots_rounding():
    groups = [np.arange(1.0, 6.0), np.arange(1.0, 8.0), np.arange(1.0, 11.0)]
    keep = allocate(groups, 0.5, scope="layer")
    # 5 -> keep round(2.5)=2, 7 -> keep round(3.5)=4, 10 -> keep 5 (half to even, as tfmot)
    assert _pruned(keep) == [3, 3, 5]
    assert keep[0].tolist() == [False, False, False, True, True]  # the lowest scores go


def test_global_scope_ranks_all_groups_against_one_threshold():
    small, large = np.array([0.1, 0.2, 0.3, 0.4]), np.array([1.0, 2.0, 3.0, 4.0])
    keep = allocate([small, large], 0.5, scope="global")
    assert _pruned(keep) == [3, 1]  # capped at all-but-one, the rest of the budget goes to the other group
    assert keep[1].tolist() == [False, True, True, True]


def test_caps_hold_and_the_total_stays_exact_when_they_allow_it():
    small, large = np.full(10, 1e-3), np.linspace(1, 2, 90)
    keep = allocate([small, large], 0.6, scope="global", max_sparsity=0.8)
    assert _pruned(keep)[0] == 8 and sum(_pruned(keep)) == 60


def test_round_to_keeps_a_multiple_and_only_lowers_counts():
    keep = allocate([np.arange(16.0), np.arange(4.0)], 0.3, scope="layer", round_to=8)
    assert [int(k.sum()) for k in keep] == [16, 4]  # 16*0.7=11.2 kept -> 16; 4 < 8 -> all
    keep = allocate([np.arange(16.0)], 0.6, scope="layer", round_to=8)
    assert int(keep[0].sum()) == 8 and not keep[0][:8].any()


def test_overrides_prune_a_group_alone_at_its_own_sparsity_in_either_scope():
    groups = [np.arange(10.0), np.arange(10.0) + 100, np.arange(10.0) + 200]
    keep = allocate(groups, 0.5, scope="global", overrides={2: 0.2})
    assert _pruned(keep) == [9, 1, 2]  # groups 0 and 1 share 10, group 2 loses its own 20%
    assert _pruned(allocate(groups, 0.5, scope="layer", overrides={0: 0.9})) == [9, 5, 5]


def test_unscored_groups_are_kept_whole():
    keep = allocate([None, np.arange(4.0)], 0.5, scope="global")
    assert keep[0].size == 0 and _pruned(keep) == [0, 2]


def test_negative_and_already_pruned_scores_rank_below_zero():
    scores = np.array([0.0, -1.0, 2.0, -np.inf, 3.0])
    assert keep_largest(scores, 3).tolist() == [False, False, True, False, True]


def test_ties_are_pruned_in_index_order_and_counts_are_exact():
    scores = np.zeros(6)
    scores[4:] = 1.0
    assert keep_largest(scores, 2).tolist() == [False, False, True, True, True, True]
    assert keep_largest(scores, 5).tolist() == [False] * 5 + [True]


def test_pruned_count_matches_float32_half_to_even():
    assert [pruned_count(0.5, n) for n in (5, 6, 7)] == [3, 3, 3]
    assert pruned_count(0.4999, 16) == 8


def test_bad_scope_is_refused():
    with pytest.raises(ValueError, match="scope"):
        allocate([np.ones(3)], 0.5, scope="model")


def test_nan_scores_count_as_the_highest_and_counts_stay_exact():
    keep = allocate([np.array([np.nan, 1.0, np.nan, 0.5]), np.full(4, np.nan)], 0.5, scope="layer")
    assert keep[0].tolist() == [True, False, True, False]
    assert _pruned(keep) == [2, 2]
