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


def test_entropy_prunes_the_channels_whose_output_never_changes_where_l2_keeps_them():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    conv = keras.layers.Conv2D(8, 3, activation="relu", name="conv")
    outputs = keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(conv(inputs)))
    model = keras.Model(inputs, outputs)
    kernel = np.random.default_rng(0).normal(size=(3, 3, 3, 8)).astype("float32")
    kernel[..., :4] *= 10  # loud channels 0-3 ...
    bias = np.zeros(8, "float32")
    bias[:4] = -1e4  # ... that ReLU holds at 0 for every image: constant, no information
    conv.set_weights([kernel, bias])
    x = np.random.default_rng(1).normal(size=(64, 8, 8, 3)).astype("float32")
    flops = tfprune.FlopsBudget(0.6)
    pruned = {name: tfprune.prune_to_budget(model, flops, importance=name, data=x) for name in ("entropy", "l2")}
    kept = {name: ~p.get_layer("prune_channels_conv").pruned("output") for name, p in pruned.items()}
    assert not kept["entropy"][:4].any() and kept["entropy"][4:].all()
    assert kept["l2"][:4].all()
    with pytest.raises(ValueError, match="give data=x"):
        tfprune.prune_to_budget(model, flops, importance="entropy")
    with pytest.raises(ValueError, match="Entropy scores channels by their outputs over data, in one shot"):
        tfprune.prune_channels(model, tfprune.ConstantSparsity(0.5), importance="entropy")


def test_histogram_entropy_is_zero_for_a_constant_channel_and_log_bins_for_a_uniform_one():
    values = np.stack([np.arange(64.0), np.full(64, 3.0)], axis=1)
    np.testing.assert_allclose(importance.histogram_entropy(values, bins=8), [np.log(8), 0.0])
