"""Pruning to a budget: FLOPs and parameter budgets, one-shot and gradual, the cost model they search on."""

import keras
import numpy as np
import pytest

import tfprune
from tests.conftest import compile_classifier, loud_but_unread
from tfprune import data
from tfprune.selection.budget import allocate_to_budget
from tfprune.structured.channel_cost import ChannelCost
from tfprune.structured.controller import ChannelController

L = keras.layers


def residual_net(seed=0):
    """Convolutions, a residual add, a concatenation, BatchNorm and a depthwise convolution: every way channels
    couple."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((12, 12, 3))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 3, padding="same", name="stem")(inputs)))
    branch = L.Conv2D(16, 3, padding="same", activation="relu", name="branch")(x)
    x = L.Add()([x, L.Conv2D(16, 1, name="project")(branch)])
    x = L.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    wide = L.Concatenate()([L.Conv2D(24, 1, activation="relu", name="left")(x),
                            L.Conv2D(8, 1, activation="relu", name="right")(x)])
    x = L.GlobalAveragePooling2D()(L.Conv2D(32, 1, activation="relu", name="mix")(wide))
    return keras.Model(inputs, L.Dense(10, name="out")(L.Dense(20, activation="relu", name="hidden")(x)))


def test_the_cost_model_predicts_flops_and_parameters_of_the_shrunk_model_exactly():
    pruned = tfprune.prune_channels(residual_net(), tfprune.ConstantSparsity(0.5, 0))
    controller = ChannelController(pruned)
    flops, params = ChannelCost.flops(pruned, controller.sets), ChannelCost.params(pruned, controller.sets)
    dense = tfprune.model_cost(residual_net())
    assert (flops.total(flops.sizes), params.total(params.sizes)) == (dense.flops, dense.params)
    rng = np.random.default_rng(0)
    for _ in range(3):  # random channel counts, each on a fresh copy (pruned weights are zeroed for good)
        pruned = tfprune.prune_channels(residual_net(), tfprune.ConstantSparsity(0.5, 0))
        controller = ChannelController(pruned)
        chosen = [rng.choice(s.size, rng.integers(0, s.size), replace=False) for s in controller.sets]
        controller._apply(chosen, step=0)
        kept = flops.sizes - np.array([len(c) for c in chosen])
        small = tfprune.model_cost(tfprune.shrink(pruned, verbose=False))
        assert (flops.total(kept), params.total(kept)) == (small.flops, small.params)


@pytest.mark.parametrize("budget, measure", [(tfprune.FlopsBudget(0.5), "flops"), (tfprune.ParamsBudget(0.3), "params"),
                                             (tfprune.FlopsBudget(0.2), "flops")])
def test_one_shot_pruning_lands_just_under_the_budget(budget, measure):
    model = residual_net()
    small = tfprune.shrink(tfprune.prune_to_budget(model, budget), verbose=False)
    ratio = getattr(tfprune.model_cost(small), measure) / getattr(tfprune.model_cost(model), measure)
    assert budget.ratio - 0.05 < ratio <= budget.ratio


def test_round_to_and_max_sparsity_hold_under_a_budget():
    pruned = tfprune.prune_to_budget(residual_net(), tfprune.FlopsBudget(0.4), round_to=4, max_sparsity=0.75)
    for wrapper in pruned.layers:
        if isinstance(wrapper, tfprune.PruneChannels) and "output" in wrapper.channel_masks:
            kept, size = int((~wrapper.pruned("output")).sum()), wrapper.channel_masks["output"].shape[0]
            assert kept % 4 == 0 and kept >= 0.25 * size, wrapper.layer.name


def test_the_least_important_channels_per_unit_of_cost_go_first():
    # Two sets that cost the same per group: the one whose scores are all alike loses the most.
    owners = {("a", "output"): (8, [(0, 1)]), ("b", "output"): (8, [(1, 1)])}
    cost = ChannelCost([(100.0, [("a", "output")]), (100.0, [("b", "output")])], owners, 200.0, [8, 8])
    flat = np.ones(8)  # every group as important as its set's average: losing one costs 1
    peaked = np.array([0.01, 0.01, 0.01, 0.01, 1, 1, 10, 10])  # four nearly worthless groups
    keep = allocate_to_budget([flat, peaked], cost, target=150.0)
    assert [int((~k).sum()) for k in keep] == [0, 4]
    assert keep[1].tolist() == [False] * 4 + [True] * 4
    # already pruned groups (-inf) stay pruned, and a set scored None stays whole
    keep = allocate_to_budget([None, np.array([-np.inf, 5, 1, 3, 2, 4, 6, 7])], cost, target=165.0)  # 3 of 8 go
    assert keep[0].all() and keep[1].tolist() == [False, True, False, True, False, True, True, True]


def test_an_unreachable_budget_gives_the_lowest_reachable_cost():
    with pytest.raises(ValueError, match=r"FlopsBudget\(0.01\) .*cannot be reached.*leaves 0\.\d+ of it.*max_sparsity"):
        tfprune.prune_to_budget(residual_net(), tfprune.FlopsBudget(0.01))


def test_gradual_pruning_reaches_the_budget_at_the_schedules_end_and_resumes_from_a_file(tmp_path):
    (x, y), (x_test, _) = data.load_digits()
    x, x_test = (np.repeat(np.repeat(np.repeat(images, 3, -1), 3, 1), 3, 2)[:, :12, :12] for images in (x, x_test))
    steps = int(np.ceil(len(x) / 64))
    schedule = tfprune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=2 * steps, frequency=steps)
    pruned = compile_classifier(tfprune.prune_channels(residual_net(), schedule, budget=tfprune.FlopsBudget(0.4)))
    dense_flops = tfprune.model_cost(residual_net()).flops

    def flops_ratio(model):
        return tfprune.model_cost(tfprune.shrink(model, verbose=False)).flops / dense_flops

    with pytest.warns(UserWarning, match="Training ends at step"):  # the run stops halfway on purpose
        pruned.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    halfway = flops_ratio(pruned)  # after the update at one epoch: part of the way to 0.4
    assert 0.4 < halfway < 0.95
    pruned.save(tmp_path / "run.keras")
    resumed = compile_classifier(tfprune.load_model(tmp_path / "run.keras"))
    assert resumed.layers[1].budget == tfprune.FlopsBudget(0.4)
    resumed.fit(x, y, epochs=2, initial_epoch=1, batch_size=64, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    assert 0.35 < flops_ratio(resumed) <= 0.4


@pytest.mark.parametrize("call, message", [
    (lambda m: tfprune.FlopsBudget(0), r"ratio of the dense model's FLOPs in \(0, 1\]"),
    (lambda m: tfprune.ParamsBudget(1.5), r"ratio of the dense model's parameters in \(0, 1\]"),
    (lambda m: tfprune.prune_to_budget(m, 0.5), "must be a tfprune budget such as tfprune.FlopsBudget"),
    (lambda m: tfprune.prune_channels(m, tfprune.ConstantSparsity(0.0, 0), budget=tfprune.FlopsBudget(0.5)),
     "give it a final sparsity above 0"),
    (lambda m: tfprune.prune_to_budget(m, tfprune.FlopsBudget(0.5), importance="taylor"), r"give data=\(x, y\)"),
    (lambda m: tfprune.PruningController(tfprune.prune_channels(m, tfprune.ConstantSparsity(0.5, 0), budget=tfprune.
     FlopsBudget(0.5))).prune_to(0.5, overrides={"stem": 0.2}), "budget chooses: give one or the other"),
])
def test_bad_budgets_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call(residual_net())


def test_keep_counts_keeps_the_most_important_groups_of_each_set():
    pruned = tfprune.prune_channels(residual_net(), tfprune.ConstantSparsity(0.5, 0), importance="l1")
    controller = ChannelController(pruned)
    counts = [max(1, s.size // 3) for s in controller.sets]
    controller.keep_counts(counts, step=0)
    assert controller.kept_groups().tolist() == counts
    # the same choice as pruning each set to that sparsity by the same scores
    again = tfprune.prune_channels(residual_net(), tfprune.ConstantSparsity(0.5, 0), importance="l1")
    ChannelController(again).prune_to(0.0, step=0, overrides={
        name: 1 - count / s.size for s, count in zip(controller.sets, counts)
        for name in {layer.name for layer, role, _ in s.members if role == "output"}})
    assert [w.pruned(r).tolist() for w in again.layers if isinstance(w, tfprune.PruneChannels) for r in w.channel_masks] \
        == [w.pruned(r).tolist() for w in pruned.layers if isinstance(w, tfprune.PruneChannels) for r in w.channel_masks]


def test_taylor_importance_records_gradients_on_data_and_prunes_what_the_loss_does_not_need():
    model, x, y = loud_but_unread()
    kernel = model.get_layer("hidden").get_weights()[0]
    budget = tfprune.ParamsBudget(0.6)

    def pruned_channels(pruned):
        return np.flatnonzero(pruned.get_layer("prune_channels_hidden").pruned("output"))

    by_l2 = pruned_channels(tfprune.prune_to_budget(model, budget))
    taylor = tfprune.prune_to_budget(model, budget, importance="taylor", data=(x, y))
    by_taylor = pruned_channels(taylor)
    assert (by_taylor < 8).sum() >= 5  # the loud, useless channels go (7 of 16 here)...
    assert (by_l2 >= 8).all()          # where L2 takes only quiet, useful ones
    kept = ~taylor.get_layer("prune_channels_hidden").pruned("output")
    hidden = keras.ops.convert_to_numpy(taylor.get_layer("prune_channels_hidden").layer.kernel)
    np.testing.assert_allclose(hidden[:, kept], kernel[:, kept], rtol=1e-6)  # the scoring pass changed no weight
