"""The one controller: `prune_to` with overrides for weights and channels, the masks-changed event,
and `UpdatePruningStep(update_masks=False)` for drivers that set masks themselves."""

import keras
import numpy as np
import pytest

import tfprune
from tests.conftest import compile_classifier, mlp
from tfprune.controller import on_masks_changed


def _layer_sparsity(model):
    return {w.layer.name: round(1 - float(np.mean([m.numpy().mean() for m in w.masks])), 3)
            for w in tfprune.apply.wrapper.pruning_wrappers(model) if getattr(w, "masks", None)}


def _names(model):
    return [layer.name for layer in model.layers]


def test_prune_to_prunes_weights_now_with_per_layer_overrides():
    model = mlp()
    first, second, head = _names(model)
    pruned = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(0.9, begin_step=1000))
    controller = tfprune.PruningController(pruned)
    heard = []
    stop = on_masks_changed(pruned, heard.append)
    controller.prune_to(0.5, overrides={head: 0.2}, step=3)
    stop()
    assert _layer_sparsity(pruned) == {first: 0.5, second: 0.5, head: 0.2}
    assert heard == [3] and controller.step == 3
    controller.prune_to(0.7)  # after `stop`: nobody is told
    assert heard == [3]


def test_prune_to_global_ranks_the_layers_without_an_override_together():
    model = mlp()
    first, second, head = _names(model)
    model.layers[0].kernel.assign(model.layers[0].kernel * 10)  # the first layer's weights dominate the ranking
    pruned = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(0.5, begin_step=1000))
    tfprune.PruningController(pruned).prune_to(0.6, overrides={head: 0.1}, scope="global")
    sparsity = _layer_sparsity(pruned)
    assert sparsity[head] == 0.1
    assert sparsity[first] < 0.6 < sparsity[second]
    weights = {w.layer.name: w.masks[0].numpy() for w in tfprune.apply.wrapper.pruning_wrappers(pruned)}
    kept = weights[first].sum() + weights[second].sum()
    assert kept == pytest.approx(0.4 * (weights[first].size + weights[second].size), abs=1)


def test_prune_to_channels_with_an_override_for_one_layers_outputs():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, name="a"), keras.layers.Dense(16, name="b"),
                              keras.layers.Dense(4, name="out")])
    pruned = tfprune.prune_channels(model, tfprune.ConstantSparsity(0.5, begin_step=1000))
    tfprune.PruningController(pruned).prune_to(0.5, overrides={"b": 0.25})
    kept = {w.layer.name: int(w.channel_masks["output"].numpy().sum())
            for w in tfprune.apply.wrapper.pruning_wrappers(pruned) if "output" in w.channel_masks}
    assert kept["a"] == 16 and kept["b"] == 12


def test_fit_tells_listeners_at_the_steps_masks_change(digits):
    (x, y), _ = digits
    schedule = tfprune.PolynomialDecay(0.0, 0.6, begin_step=0, end_step=10, frequency=5)
    pruned = compile_classifier(tfprune.prune_low_magnitude(mlp(), schedule))
    heard = []
    on_masks_changed(pruned, heard.append)
    pruned.fit(x[:384], y[:384], epochs=1, batch_size=32, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    assert heard == [5, 10]


def test_update_masks_false_counts_steps_and_holds_the_masks(digits):
    (x, y), _ = digits
    pruned = compile_classifier(tfprune.prune_low_magnitude(mlp(), tfprune.ConstantSparsity(0.5, begin_step=0,
                                                                                             frequency=1)))
    controller = tfprune.PruningController(pruned)
    controller.prune_to(0.3)
    held = _layer_sparsity(pruned)
    pruned.fit(x[:128], y[:128], epochs=2, batch_size=32, verbose=0,
               callbacks=[tfprune.UpdatePruningStep(update_masks=False)])
    assert _layer_sparsity(pruned) == held and set(held.values()) == {0.3}
    assert controller.step == 8


def test_a_model_without_pruned_layers_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="prune_low_magnitude.*or tfprune.prune_channels"):
        tfprune.PruningController(mlp())


def test_prune_to_takes_one_sparsity_per_weight_of_a_layer():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5, 8)), keras.layers.SimpleRNN(16, name="rnn"), keras.layers.Dense(4)])
    pruned = tfprune.prune_low_magnitude(model)
    tfprune.PruningController(pruned).prune_to(0.0, overrides={"rnn": [0.25, 0.75]})
    rnn = pruned.get_layer("prune_low_magnitude_rnn")
    assert [round(1 - float(m.numpy().mean()), 2) for m in rnn.masks] == [0.25, 0.75]


def test_overrides_that_cannot_apply_are_errors_naming_the_layer():
    pruned = tfprune.prune_low_magnitude(mlp())
    with pytest.raises(ValueError, match="'hiden'.*not a pruned layer"):
        tfprune.PruningController(pruned).prune_to(0.5, overrides={"hiden": 0.1})
    model = mlp()
    first = _names(model)[0]
    n_m = tfprune.prune_low_magnitude(model, sparsity_m_by_n=(2, 4))
    with pytest.raises(ValueError, match=f"'{first}'.*N:M"):
        tfprune.PruningController(n_m).prune_to(0.5, overrides={first: 0.1})
    model = mlp()
    head = _names(model)[-1]
    channels = tfprune.prune_channels(model, tfprune.ConstantSparsity(0.5))
    with pytest.raises(ValueError, match=f"{head}'.*not (a )?pruned"):  # the model's output keeps its channels
        tfprune.PruningController(channels).prune_to(0.5, overrides={head: 0.1})


def test_holding_the_masks_still_warms_up_the_penalty():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="hidden"), keras.layers.Dense(2)])
    pruned = tfprune.prune_channels(model, tfprune.ConstantSparsity(0.5, begin_step=1, frequency=1),
                                    penalty=tfprune.GroupLasso(0.5, warmup_steps=10))
    controller = tfprune.PruningController(pruned)
    assert controller.update(3, update_masks=False) is False
    hidden = pruned.get_layer("prune_channels_hidden")
    assert int(hidden.pruning_step.numpy()) == 3 and not hidden.pruned("output").any()


def test_a_fit_that_raises_leaves_no_listener_behind(digits):
    (x, y), _ = digits
    pruned = compile_classifier(tfprune.prune_low_magnitude(mlp()))
    with pytest.raises(ValueError, match="beyond this run"):
        pruned.fit(x[:64], y[:64], epochs=1, batch_size=32, verbose=0,
                   callbacks=[tfprune.UpdatePruningStep(), tfprune.WeightRewinding(rewind_step=500)])
    assert getattr(pruned, "_tfprune_masks_changed_listeners", []) == []


def test_channel_overrides_reach_a_set_through_any_layer_that_masks_it():
    keras.utils.set_random_seed(0)
    L = keras.layers
    model = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(8, 3, name="c1"), L.BatchNormalization(name="bn"),
                              L.ReLU(), L.Conv2D(8, 3, name="c2"), L.GlobalAveragePooling2D(), L.Dense(2)])
    pruned = tfprune.prune_channels(model, tfprune.ConstantSparsity(0.5, begin_step=1000))
    controller = tfprune.PruningController(pruned)
    controller.prune_to(0.5, overrides={"bn": 0.25})
    conv = pruned.get_layer("prune_channels_c1")
    assert int((~conv.pruned("output")).sum()) == 6
    with pytest.raises(ValueError, match="coupled channels of \\['bn', 'c1'\\] different sparsities"):
        controller.prune_to(0.5, overrides={"bn": 0.25, "c1": 0.5})
