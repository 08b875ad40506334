"""One Importance family scores weight entries (magnitude pruning) and channel groups alike."""

import numpy as np
import pytest

import tfprune
from tfprune.criteria import importance


def test_l1_and_l2_score_a_weight_entry_by_its_magnitude():
    values = np.random.default_rng(0).normal(size=(6, 4))
    for criterion in (importance.L1Norm(), importance.L2Norm(), importance.MAGNITUDE):
        np.testing.assert_allclose(criterion.entry_scores(values), np.abs(values))


def test_a_criterion_that_cannot_score_entries_says_so():
    with pytest.raises(ValueError, match="BatchNormScale cannot score single weight entries"):
        importance.BatchNormScale().entry_scores(np.ones((2, 2)))


def test_a_users_criterion_ranks_magnitude_pruning_too():
    class Squared(tfprune.Importance):
        def __call__(self, slices):
            return sum(np.square(s.values).sum(axis=1) for s in slices)

    values = np.array([[-3.0, 1.0], [0.5, 0.0]])
    np.testing.assert_allclose(Squared().entry_scores(values), values ** 2)
