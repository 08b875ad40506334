"""prune_channels: whole channels pruned during fit, saved and resumed, then shrunk to a smaller model."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune import data
from tests.conftest import compile_classifier

L = keras.layers
BATCH = 64



@pytest.fixture(scope="module")
def images():
    (x, y), (x_test, y_test) = data.load_digits()
    return (x, y), (x_test, y_test)


def digits_cnn(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((8, 8, 1)), L.Conv2D(16, 3, padding="same", name="conv1"), L.BatchNormalization(name="bn1"),
        L.ReLU(), L.Conv2D(32, 3, name="conv2"), L.ReLU(), L.MaxPooling2D(), L.Flatten(),
        L.Dense(32, activation="relu", name="hidden"), L.Dense(10, name="out"),
    ])


def channel_counts(model):
    """{layer: channels kept} of a channel-pruned model, from its masks."""
    return {w.layer.name: int((~w.pruned(role)).sum()) for w in model.layers if isinstance(w, tfprune.PruneChannels)
            for role in w.channel_masks}


def test_fit_prunes_half_of_every_set_of_channels_and_shrink_keeps_the_outputs(images):
    (x, y), (x_test, y_test) = images
    dense = compile_classifier(digits_cnn())
    dense.fit(x, y, epochs=4, batch_size=BATCH, verbose=0)
    steps = int(np.ceil(len(x) / BATCH))
    schedule = tfprune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=2 * steps, frequency=steps // 2)
    pruned = compile_classifier(tfprune.prune_channels(dense, schedule))

    pruned.fit(x, y, epochs=3, batch_size=BATCH, verbose=0, callbacks=[tfprune.UpdatePruningStep()])

    assert channel_counts(pruned) == {"conv1": 8, "bn1": 8, "conv2": 16, "hidden": 16}
    small = tfprune.shrink(pruned, verbose=False)
    assert [small.get_layer(n).kernel.shape[-1] for n in ("conv1", "conv2", "hidden", "out")] == [8, 16, 16, 10]
    np.testing.assert_allclose(small.predict(x_test, verbose=0), pruned.predict(x_test, verbose=0), atol=1e-4)
    accuracy = np.mean(np.argmax(small.predict(x_test, verbose=0), -1) == y_test)
    assert accuracy > 0.85
    assert tfprune.model_cost(small).flops < 0.4 * tfprune.model_cost(dense).flops


def test_a_saved_run_resumes_with_its_masks_and_step(images, tmp_path):
    (x, y), _ = images
    steps = int(np.ceil(len(x) / BATCH))
    schedule = tfprune.PolynomialDecay(0.0, 0.75, begin_step=0, end_step=2 * steps, frequency=steps)
    pruned = compile_classifier(tfprune.prune_channels(digits_cnn(), schedule, importance="l1"))
    pruned.fit(x, y, epochs=1, batch_size=BATCH, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    path = tmp_path / "half.keras"
    pruned.save(path)

    loaded = tfprune.load_model(path)

    assert channel_counts(loaded) == channel_counts(pruned)
    assert tfprune.PruningController(loaded).step == steps
    before = channel_counts(loaded)
    loaded.fit(x, y, epochs=1, batch_size=BATCH, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    after = channel_counts(loaded)
    assert after == {"conv1": 4, "bn1": 4, "conv2": 8, "hidden": 8}
    assert all(after[name] < before[name] for name in after)


def test_round_to_keeps_multiples_and_max_sparsity_caps_every_set():
    model = tfprune.prune_channels(digits_cnn(), tfprune.ConstantSparsity(0.6, 0), round_to=8, max_sparsity=0.7)
    tfprune.PruningController(model).prune_to(0.6, step=0)
    assert channel_counts(model) == {"conv1": 8, "bn1": 8, "conv2": 16, "hidden": 16}  # 6.4 -> 8, 12.8 -> 16
    tfprune.PruningController(model).prune_to(0.95, step=1)
    assert channel_counts(model) == {"conv1": 8, "bn1": 8, "conv2": 16, "hidden": 16}  # capped at 70%: 4.8 -> 8


def test_global_scope_prunes_the_target_fraction_of_all_channels_unevenly():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((20,)), L.Dense(40, activation="relu", name="wide"),
                              L.Dense(40, activation="relu", name="weak"), L.Dense(3, name="out")])
    weak = model.get_layer("weak")
    weak.set_weights([w * 0.01 for w in weak.get_weights()])  # the same small factor for every channel of a set
    pruned = tfprune.prune_channels(model, tfprune.ConstantSparsity(0.5, 0), scope="global")
    tfprune.PruningController(pruned).prune_to(0.5, step=0)
    counts = channel_counts(pruned)
    assert counts["wide"] + counts["weak"] == 40
    # scores are divided by their set's mean, so a uniformly small layer is not wiped out
    assert 5 <= counts["weak"] <= 35


def test_bn_scale_prunes_the_smallest_gammas_and_leaves_sets_without_batch_norm():
    model = digits_cnn()
    bn = model.get_layer("bn1")
    gamma, beta, mean, variance = bn.get_weights()
    gamma[:] = np.arange(1, 17) / 16
    bn.set_weights([gamma, beta, mean, variance])
    pruned = tfprune.prune_channels(model, tfprune.ConstantSparsity(0.25, 0), importance="bn_scale")
    tfprune.PruningController(pruned).prune_to(0.25, step=0)
    wrapper = pruned.get_layer("prune_channels_bn1")
    np.testing.assert_array_equal(np.flatnonzero(wrapper.pruned("channel")), [0, 1, 2, 3])
    assert channel_counts(pruned)["conv2"] == 32 and channel_counts(pruned)["hidden"] == 32


def test_a_custom_importance_decides_which_channels_go():
    class LastChannelsFirst(tfprune.Importance):
        def __call__(self, slices):
            return -np.arange(len(slices[0].values), dtype=float)

    model = keras.Sequential([keras.Input((4,)), L.Dense(8, name="hidden"), L.Dense(2, name="out")])
    pruned = tfprune.prune_channels(model, tfprune.ConstantSparsity(0.5, 0), importance=LastChannelsFirst())
    tfprune.PruningController(pruned).prune_to(0.5, step=0)
    np.testing.assert_array_equal(np.flatnonzero(pruned.get_layer("prune_channels_hidden").pruned("output")),
                                  [4, 5, 6, 7])


def _mlp_with_a_big_unit_the_loss_ignores():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), L.Dense(8, activation="relu", name="hidden"), L.Dense(3, name="out")])
    hidden, out = model.get_layer("hidden"), model.get_layer("out")
    kernel, bias = hidden.get_weights()
    kernel[:, 3] *= 10  # the largest norm ...
    hidden.set_weights([kernel, bias])
    kernel, bias = out.get_weights()
    kernel[3] = 0  # ... but nothing reads it
    out.set_weights([kernel, bias])
    return model


@pytest.mark.parametrize("importance, prunes_the_ignored_unit", [("taylor", True), ("l1", False)])
def test_taylor_prunes_the_unit_the_loss_does_not_depend_on_where_magnitude_keeps_it(importance,
                                                                                    prunes_the_ignored_unit):
    x = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
    y = np.random.default_rng(1).integers(0, 3, 64)
    schedule = tfprune.PolynomialDecay(0.0, 0.125, begin_step=0, end_step=4, frequency=4)
    pruned = tfprune.prune_channels(_mlp_with_a_big_unit_the_loss_ignores(), schedule, importance=importance)
    pruned.compile(keras.optimizers.SGD(1e-6), keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    pruned.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[tfprune.UpdatePruningStep()])

    pruned_units = np.flatnonzero(pruned.get_layer("prune_channels_hidden").pruned("output")).tolist()
    assert len(pruned_units) == 1
    assert (pruned_units == [3]) == prunes_the_ignored_unit


def test_taylor_before_any_training_batch_is_an_error():
    pruned = tfprune.prune_channels(digits_cnn(), tfprune.ConstantSparsity(0.5, 0), importance="taylor")
    with pytest.raises(ValueError, match="has not seen a training batch yet.*begin_step >= 1"):
        tfprune.PruningController(pruned).prune_to(0.5, step=0)


def test_pruned_channels_are_zero_in_the_masked_model_and_strip_keeps_them_zero():
    model = tfprune.prune_channels(digits_cnn(), tfprune.ConstantSparsity(0.5, 0))
    tfprune.PruningController(model).prune_to(0.5, step=0)
    stripped = tfprune.strip_pruning(model)
    kernel, bias = stripped.get_layer("conv2").get_weights()
    pruned = model.get_layer("prune_channels_conv2").pruned("output")
    assert not kernel[..., pruned].any() and not bias[pruned].any() and kernel[..., ~pruned].all(axis=(0, 1, 2)).any()
    gamma, beta = stripped.get_layer("bn1").get_weights()[:2]
    assert not gamma[model.get_layer("prune_channels_bn1").pruned("channel")].any()
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(stripped.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_a_sigmoid_layer_keeps_its_units_with_a_warning():
    model = keras.Sequential([keras.Input((6,)), L.Dense(8, activation="relu", name="relu_units"),
                              L.Dense(8, activation="sigmoid", name="gates"), L.Dense(2, name="out")])
    with pytest.warns(UserWarning, match="'gates'.*sigmoid"):
        pruned = tfprune.prune_channels(model, tfprune.ConstantSparsity(0.5, 0))
    tfprune.PruningController(pruned).prune_to(0.5, step=0)
    assert channel_counts(pruned)["relu_units"] == 4
    assert not any(isinstance(layer, tfprune.PruneChannels) and layer.layer.name == "gates" for layer in pruned.layers)


def attention_classifier():
    """Four heads and a 16-unit hidden layer: the two prunable sets."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 16))
    attended = L.MultiHeadAttention(4, 8, name="attention")(inputs, inputs)
    x = L.LayerNormalization()(L.Add()([inputs, attended]))
    hidden = L.Dense(16, activation="relu", name="hidden")(L.GlobalAveragePooling1D()(x))
    return keras.Model(inputs, L.Dense(3)(hidden))


def test_attention_heads_are_pruned_and_shrunk_away():
    pruned = tfprune.prune_channels(attention_classifier(), tfprune.ConstantSparsity(0.5, 0))
    tfprune.PruningController(pruned).prune_to(0.5, step=0)

    small = tfprune.shrink(pruned, verbose=False)

    assert small.get_layer("attention").num_heads == 2
    x = np.random.default_rng(0).normal(size=(2, 5, 16)).astype("float32")
    np.testing.assert_allclose(small.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-5)


def test_sets_that_round_to_or_max_sparsity_keep_whole_are_named_with_the_reason():
    with pytest.warns(UserWarning, match=r"none of the channels of 1 of 2 sets.*'attention' heads \(4\): round_to=8 "
                                         r"keeps a multiple of 8 of them"):
        pruned = tfprune.prune_channels(attention_classifier(), tfprune.ConstantSparsity(0.5, 0), round_to=8)
    tfprune.PruningController(pruned).prune_to(0.5, step=0)
    assert not pruned.get_layer("prune_channels_attention").pruned("heads").any()  # as announced
    assert channel_counts(pruned)["hidden"] == 8

    with pytest.warns(UserWarning, match=r"'attention' heads \(4\): max_sparsity=0.2 allows pruning none"):
        tfprune.prune_channels(attention_classifier(), tfprune.ConstantSparsity(0.2, 0), max_sparsity=0.2)


def test_a_depthwise_conv2d_with_groups_loses_whole_groups_with_the_channels_that_feed_them():
    """ConvNeXt writes its depthwise convolutions as Conv2D(groups=channels); here with two filters per group."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = L.ReLU()(L.BatchNormalization(name="bn1")(L.Conv2D(8, 1, name="expand")(inputs)))
    x = L.ReLU()(L.BatchNormalization(name="bn2")(L.Conv2D(16, 3, padding="same", groups=8, name="depthwise")(x)))
    model = keras.Model(inputs, L.Dense(3)(L.GlobalAveragePooling2D()(L.Conv2D(4, 1, name="project")(x))))
    pruned = tfprune.prune_channels(model, tfprune.ConstantSparsity(0.5, 0))
    tfprune.PruningController(pruned).prune_to(0.5, step=0)

    small = tfprune.shrink(pruned, verbose=False)

    depthwise = small.get_layer("depthwise")
    assert (depthwise.groups, depthwise.filters, small.get_layer("expand").filters) == (4, 8, 4)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    expected = pruned.predict(x, verbose=0)
    assert np.abs(expected).max() > 1e-2
    np.testing.assert_allclose(small.predict(x, verbose=0), expected, atol=1e-6)


def test_training_without_the_callback_is_refused(images):
    (x, y), _ = images
    pruned = compile_classifier(tfprune.prune_channels(digits_cnn(), tfprune.ConstantSparsity(0.5, 0)))
    with pytest.raises(RuntimeError, match="UpdatePruningStep"):
        pruned.fit(x[:64], y[:64], epochs=1, verbose=0)


@pytest.mark.parametrize("kwargs, message", [
    ({"round_to": 0}, "`round_to` must be a positive integer"),
    ({"round_to": 2.5}, "`round_to` must be a positive integer"),
    ({"max_sparsity": 1.0}, r"`max_sparsity` must be in \(0, 1\)"),
    ({"max_sparsity": float("nan")}, r"`max_sparsity` must be in \(0, 1\)"),
    ({"max_sparsity": 0.4}, "exceeds max_sparsity=0.4"),
    ({"importance": "taylor2"}, r"Unknown importance 'taylor2'. Use one of \['bn_scale', 'entropy', 'grasp', 'l1', 'l2', "),
    ({"scope": "model"}, "`scope` must be one of"),
])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tfprune.prune_channels(digits_cnn(), tfprune.ConstantSparsity(0.5, 0), **kwargs)


def test_a_model_with_nothing_to_prune_or_already_pruned_is_refused():
    single = keras.Sequential([keras.Input((4,)), L.Dense(2)])
    with pytest.raises(ValueError, match="no channel that prune_channels can remove"):
        tfprune.prune_channels(single, tfprune.ConstantSparsity(0.5, 0))
    pruned = tfprune.prune_low_magnitude(digits_cnn(), tfprune.ConstantSparsity(0.5, 0))
    with pytest.raises(ValueError, match="already pruned.*strip_pruning"):
        tfprune.prune_channels(pruned, tfprune.ConstantSparsity(0.5, 0))


@pytest.mark.slow
def test_mobilenet_v2_channel_pruned_to_half_shrinks_with_identical_outputs():
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, alpha=0.35, input_shape=(96, 96, 3), classes=10,
                                           classifier_activation=None)
    assert_half_pruned_shrinks_to_the_same_outputs(model, round_to=4, flops_below=0.6, pixel_range=1)


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["EfficientNetB0", "MobileNetV3Small"])
def test_squeeze_excitation_networks_channel_pruned_to_half_shrink_with_identical_outputs(architecture):
    """Squeeze-and-excitation blocks multiply a (1, 1, C) gate into (H, W, C): both sides are tied."""
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, architecture)(weights=None, input_shape=(64, 64, 3), classes=10,
                                                      classifier_activation=None)
    assert_half_pruned_shrinks_to_the_same_outputs(model, round_to=8, flops_below=0.4, pixel_range=255)


def assert_half_pruned_shrinks_to_the_same_outputs(model, round_to, flops_below, pixel_range):
    """Prunes half of every channel set of a keras.applications model at once, shrinks it, compares outputs."""
    pruned = tfprune.prune_channels(model, tfprune.ConstantSparsity(0.5, 0), round_to=round_to)
    tfprune.PruningController(pruned).prune_to(0.5, step=0)

    small = tfprune.shrink(pruned, verbose=False)

    assert tfprune.model_cost(small).flops < flops_below * tfprune.model_cost(model).flops
    x = np.random.default_rng(0).uniform(0, pixel_range, (2, *model.input_shape[1:])).astype("float32")
    expected = pruned.predict(x, verbose=0)
    np.testing.assert_allclose(small.predict(x, verbose=0), expected, atol=1e-5 * max(1.0, np.abs(expected).max()))
