"""Channel groups and `shrink`: a smaller model with exactly the outputs of the masked one."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.deploy import export_tflite

L = keras.layers


def zero_groups(groups):
    """Zeroes groups the way channel pruning will: producer columns and biases, BatchNorm gamma and beta,
    an attention head's output rows. One weight update per layer."""
    chosen = {}
    for group in groups:
        for layer, role, indices in group.members:
            chosen.setdefault(layer, {}).setdefault(role, []).extend(indices.tolist())
    for layer, by_role in chosen.items():
        weights = layer.get_weights()
        for position, variable in enumerate(layer.weights):
            if variable.name in ("kernel", "pointwise_kernel", "bias") and "output" in by_role:
                weights[position][..., by_role["output"]] = 0
            elif variable.name in ("gamma", "beta") and "channel" in by_role:
                weights[position][by_role["channel"]] = 0
        layer.set_weights(weights)
        if "heads" in by_role:
            output = layer._output_dense.get_weights()
            output[0][by_role["heads"]] = 0
            layer._output_dense.set_weights(output)


def zero_group(group):
    zero_groups([group])


def zero_some_groups(model, fraction, seed=0):
    groups = tfprune.channel_groups(model)
    chosen = np.random.default_rng(seed).choice(len(groups), max(1, int(fraction * len(groups))), replace=False)
    zero_groups([groups[index] for index in chosen])


def randomize_batch_norm(model, seed=0):
    """Trained-looking BatchNorm statistics, so that an untrained deep model's outputs do not vanish."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            size = layer.gamma.shape
            layer.set_weights([rng.uniform(0.5, 1.5, size), rng.normal(0, 0.1, size), rng.normal(0, 0.1, size),
                               rng.uniform(0.5, 1.5, size)])


def assert_same_outputs(model, small, x, atol=1e-5):
    expected, actual = model.predict(x, verbose=0), small.predict(x, verbose=0)
    assert np.abs(expected).max() > 1e-3, "outputs vanish: the comparison would prove nothing"
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=0)


def units(model):
    return {layer.name: layer.units for layer in model.layers if isinstance(layer, L.Dense)}


def test_mlp_loses_exactly_the_zero_units_and_keeps_its_outputs():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((10,))
    hidden = L.Dense(16, activation="relu", name="h1")(inputs)
    hidden = L.Dense(8, activation="relu", name="h2")(hidden)
    model = keras.Model(inputs, L.Dense(3, name="out")(hidden))
    groups = tfprune.channel_groups(model)
    assert len(groups) == 16 + 8  # the output layer's units are never removed
    for index in (1, 3, 5):
        zero_group(groups[index])
    zero_group(groups[16])

    small = tfprune.shrink(model, verbose=False)

    assert units(small) == {"h1": 13, "h2": 7, "out": 3}
    assert_same_outputs(model, small, np.random.default_rng(0).normal(size=(8, 10)).astype("float32"))
    assert units(model) == {"h1": 16, "h2": 8, "out": 3}  # the user's model is untouched


def test_cnn_with_batch_norm_and_flatten_drops_the_dense_rows_of_each_removed_filter():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 3)), L.Conv2D(8, 3, name="conv"), L.BatchNormalization(name="bn"), L.ReLU(), L.MaxPooling2D(),
        L.Flatten(name="flatten"), L.Dense(5, name="head"),
    ])
    randomize_batch_norm(model)
    groups = tfprune.channel_groups(model)
    assert [g.layers for g in groups[:1]] == [["conv", "bn", "flatten", "head"]]
    head_rows = [indices for layer, role, indices in groups[2].members if layer.name == "head"][0]
    np.testing.assert_array_equal(head_rows, np.arange(2, 3 * 3 * 8, 8))  # channels-last: every 8th row
    zero_group(groups[2])
    zero_group(groups[5])

    small = tfprune.shrink(model, verbose=False)

    assert small.get_layer("conv").filters == 6
    assert small.get_layer("head").kernel.shape == (3 * 3 * 6, 5)
    assert_same_outputs(model, small, np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype("float32"))


def test_zero_batch_norm_scale_and_offset_remove_a_filter_whose_kernel_is_not_zero():
    """Network slimming zeroes only the BatchNorm scale: the convolution's filter is removed with it."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6, 6, 2)), L.Conv2D(4, 3, name="conv"), L.BatchNormalization(name="bn"),
                              L.ReLU(), L.GlobalAveragePooling2D(), L.Dense(3)])
    randomize_batch_norm(model)
    gamma, beta, mean, variance = model.get_layer("bn").get_weights()
    gamma[1] = beta[1] = 0
    model.get_layer("bn").set_weights([gamma, beta, mean, variance])

    small = tfprune.shrink(model, verbose=False)

    assert small.get_layer("conv").filters == 3
    assert_same_outputs(model, small, np.random.default_rng(1).normal(size=(4, 6, 6, 2)).astype("float32"))


def _residual_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    stem = L.Conv2D(6, 1, name="stem")(inputs)
    branch = L.Conv2D(6, 3, padding="same", activation="relu", name="branch")(stem)
    merged = L.Add(name="add")([stem, branch])
    outputs = L.Dense(4, name="head")(L.GlobalAveragePooling2D()(L.Conv2D(5, 1, name="mix")(merged)))
    return keras.Model(inputs, outputs)


def test_residual_add_ties_the_channels_of_both_branches():
    model = _residual_model()
    groups = tfprune.channel_groups(model)
    tied = [g for g in groups if "stem" in g.layers]
    assert len(tied) == 6
    assert {(layer.name, role) for layer, role, _ in tied[0].members} == {
        ("stem", "output"), ("branch", "input"), ("branch", "output"), ("mix", "input")}

    zero_group(tied[1])
    small = tfprune.shrink(model, verbose=False)

    assert (small.get_layer("stem").filters, small.get_layer("branch").filters) == (5, 5)
    assert_same_outputs(model, small, np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32"))


def test_a_channel_zero_in_only_one_branch_of_an_add_is_kept():
    model = _residual_model()
    stem = model.get_layer("stem")
    kernel, bias = stem.get_weights()
    kernel[..., 2], bias[2] = 0, 0
    stem.set_weights([kernel, bias])  # branch still adds a nonzero channel 2

    with pytest.raises(ValueError, match="no channel group that is entirely zero") as error:
        tfprune.shrink(model, verbose=False)
    assert "become non-zero" not in str(error.value)  # nothing revives it: the branch was never zero


def test_concatenate_maps_each_input_to_its_offset_range():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12,))
    left, right = L.Dense(4, name="left")(inputs), L.Dense(6, name="right")(inputs)
    joined = L.Concatenate()([left, right])
    model = keras.Model(inputs, L.Dense(2, name="head")(joined))
    groups = tfprune.channel_groups(model)
    right_channel = next(g for g in groups if ("right", "output") in {(m[0].name, m[1]) for m in g.members}
                         and list(g.members[0][2]) == [3])
    assert [list(i) for layer, _, i in right_channel.members if layer.name == "head"] == [[4 + 3]]
    zero_group(right_channel)

    small = tfprune.shrink(model, verbose=False)

    assert (small.get_layer("right").units, small.get_layer("head").kernel.shape) == (5, (9, 2))
    assert_same_outputs(model, small, np.random.default_rng(0).normal(size=(4, 12)).astype("float32"))


def test_depthwise_separable_block_with_a_depth_multiplier():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    x = L.Conv2D(8, 3, name="stem")(inputs)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, name="depthwise")(x)
    x = L.ReLU(6.0)(L.BatchNormalization(name="bn")(x))
    x = L.SeparableConv2D(12, 3, padding="same", depth_multiplier=2, name="separable")(x)
    model = keras.Model(inputs, L.Dense(4, name="head")(L.GlobalMaxPooling2D()(x)))
    randomize_batch_norm(model)
    groups = tfprune.channel_groups(model)
    stem_channel = groups[3]
    assert {(layer.name, role): list(i) for layer, role, i in stem_channel.members}[("bn", "channel")] \
        == [6, 7]  # stem channel 3 owns depthwise outputs 6 and 7
    zero_group(stem_channel)
    zero_group(next(g for g in groups if g.layers == ["separable", "head"]))

    small = tfprune.shrink(model, verbose=False)

    assert small.get_layer("stem").filters == 7
    assert small.get_layer("depthwise").kernel.shape == (3, 3, 7, 2)
    assert small.get_layer("separable").pointwise_kernel.shape == (1, 1, 28, 11)
    assert_same_outputs(model, small, np.random.default_rng(0).normal(size=(2, 12, 12, 3)).astype("float32"))


def _encoder_block():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 16))
    attended = L.MultiHeadAttention(4, 8, name="attention")(inputs, inputs)
    x = L.LayerNormalization()(L.Add()([inputs, attended]))
    hidden = L.Dense(32, activation="relu", name="ffn_in")(x)
    x = L.LayerNormalization()(L.Add()([x, L.Dense(16, name="ffn_out")(hidden)]))
    return keras.Model(inputs, L.Dense(3)(L.GlobalAveragePooling1D()(x)))


def test_attention_block_loses_whole_heads_and_feed_forward_units_but_keeps_the_normalized_stream():
    model = _encoder_block()
    groups = tfprune.channel_groups(model)
    heads = [g for g in groups if g.members[0][1] == "heads"]
    assert len(heads) == 4
    # the residual stream feeds LayerNormalization, which mixes channels: its width is kept
    assert not any(("ffn_out", "output") in [(layer.name, role) for layer, role, _ in g.members] for g in groups)
    zero_group(heads[1])
    zero_group(heads[2])
    zero_groups([g for g in groups if g.layers == ["ffn_in", "ffn_out"]][:10])

    small = tfprune.shrink(model, verbose=False)

    attention = small.get_layer("attention")
    assert (attention.num_heads, small.get_layer("ffn_in").units) == (2, 22)
    assert attention._output_dense.kernel.shape == (2, 8, 16)
    assert_same_outputs(model, small, np.random.default_rng(0).normal(size=(3, 6, 16)).astype("float32"))


def zero_output_channel(layer, index, bias_value=0.0):
    kernel, bias = layer.get_weights()
    kernel[..., index], bias[index] = 0, bias_value
    layer.set_weights([kernel, bias])


def _sequence(layers, input_shape):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input(input_shape), *layers])


# A channel whose kernel column is zeroed leaves `gate` as the constant c = f(bias) and enters `head`, whose bias
# can take c times its kernel: (layers, input shape, bias of the channel, c).
FOLDED = {
    "Dense activation sigmoid": lambda: (
        [L.Dense(3, activation="sigmoid", name="gate"), L.Dense(2, name="head")], (4,), 0.0, 0.5),
    "Activation softplus layer": lambda: (
        [L.Dense(3, name="gate"), L.Activation("softplus"), L.Dense(2, name="head")], (4,), 0.0, np.log(2)),
    "a bias, through tanh": lambda: (
        [L.Dense(3, activation="tanh", name="gate"), L.Dense(2, name="head")], (4,), 0.3, np.tanh(0.3)),
    "1x1 conv without a bias": lambda: (
        [L.Conv2D(3, 3, padding="same", activation="sigmoid", name="gate"),
         L.Conv2D(2, 1, padding="same", use_bias=False, name="head")], (6, 6, 4), 0.0, 0.5),
    "3x3 valid conv, strides 2": lambda: (
        [L.Conv2D(3, 3, padding="same", name="gate"), L.Activation("sigmoid"), L.Conv2D(2, 3, strides=2, name="head")],
        (7, 7, 4), 0.0, 0.5),
    "pooled, then Dense": lambda: (
        [L.Conv2D(3, 3, activation="softplus", name="gate"), L.GlobalAveragePooling2D(), L.Dense(2, name="head")],
        (6, 6, 4), 0.0, np.log(2)),
}


@pytest.mark.parametrize("case", FOLDED)
def test_a_channel_made_constant_by_its_activation_is_removed_into_the_next_bias(case):
    layers, input_shape, bias_value, c = FOLDED[case]()
    model = _sequence(layers, input_shape)
    zero_output_channel(model.get_layer("gate"), 1, bias_value)
    head = model.get_layer("head")
    rows = head.kernel.numpy().reshape(-1, 3, 2)  # (kernel positions, input channels, outputs)
    bias = head.bias.numpy() if head.use_bias else 0

    small = tfprune.shrink(model, verbose=False)

    assert small.get_layer("gate").kernel.shape[-1] == 2 and small.get_layer("head").kernel.shape[-2] == 2
    np.testing.assert_allclose(small.get_layer("head").bias.numpy(), bias + c * rows[:, 1].sum(axis=0), rtol=1e-6)
    assert tfprune.model_cost(small).params < tfprune.model_cost(model).params
    assert_same_outputs(model, small, np.random.default_rng(0).normal(size=(4, *input_shape)).astype("float32"))


# The constant channel reaches weights that cannot take it into their bias: it is kept.
NOT_FOLDED = {
    "3x3 same-padded conv": lambda: [L.Conv2D(2, 3, padding="same")],
    "zero padding, then a valid conv": lambda: [L.ZeroPadding2D(1), L.Conv2D(2, 3)],
    "batch normalization, then a 1x1 conv": lambda: [L.BatchNormalization(), L.Conv2D(2, 1)],
    "depthwise conv": lambda: [L.DepthwiseConv2D(3), L.Conv2D(2, 1)],
    "1x1 transposed conv, strides 2": lambda: [L.Conv2DTranspose(2, 1, strides=2)],
}


@pytest.mark.parametrize("case", NOT_FOLDED)
def test_a_constant_channel_is_kept_where_its_consumer_cannot_fold_it(case):
    model = _sequence([L.Conv2D(4, 1, activation="relu", name="stem"), L.Conv2D(4, 1, name="gate"),
                       L.Activation("sigmoid"), *NOT_FOLDED[case](), L.GlobalAveragePooling2D(), L.Dense(3)], (6, 6, 3))
    randomize_batch_norm(model)
    zero_output_channel(model.get_layer("stem"), 0)  # removable: relu(0) = 0
    zero_output_channel(model.get_layer("gate"), 1)  # sigmoid(0) = 0.5 everywhere, but padded, normalized, ...

    small = tfprune.shrink(model, verbose=False)

    assert (small.get_layer("stem").filters, small.get_layer("gate").filters) == (3, 4)
    assert_same_outputs(model, small, np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype("float32"))


@pytest.mark.parametrize("separate_activation", [False, True])
def test_a_sigmoid_channel_that_cannot_be_folded_gets_an_error_naming_where_and_why(separate_activation):
    inputs = keras.Input((6, 6, 4))
    if separate_activation:
        gate = L.Activation("sigmoid", name="squash")(L.Dense(8, name="gate")(inputs))
    else:
        gate = L.Dense(8, activation="sigmoid", name="gate")(inputs)
    model = keras.Model(inputs, L.Conv2D(3, 3, padding="same", name="conv")(gate))
    zero_output_channel(model.get_layer("gate"), 2)

    reviver = "squash" if separate_activation else "gate"
    with pytest.raises(ValueError, match=rf"no channel group that is entirely zero.*Channels 2 of 'gate' \(output\) "
                                         rf"are zeroed but become non-zero at '{reviver}', where sigmoid\(0\) = 0.5, "
                                         r"and reach 'conv' \(Conv2D\) as no constant its bias can take"):
        tfprune.shrink(model, verbose=False)


@pytest.mark.parametrize("second", ["sigmoid", "softplus"])
def test_a_shared_layer_folds_a_constant_only_if_it_is_the_same_in_every_call(second):
    a, b = keras.Input((4,)), keras.Input((4,))
    head = L.Dense(2, name="head")
    gates = [L.Dense(3, activation="sigmoid", name="gate_a"), L.Dense(3, activation=second, name="gate_b")]
    model = keras.Model([a, b], L.Add()([head(gates[0](a)), head(gates[1](b))]))
    for gate in gates:
        zero_output_channel(gate, 1)  # 0.5 in both calls of `head`, or 0.5 in one and log(2) in the other

    if second == "softplus":
        with pytest.raises(ValueError, match="and reach 'head' \\(Dense\\) as no constant its bias can take"):
            tfprune.shrink(model, verbose=False)
        return  # one bias cannot take two constants
    small = tfprune.shrink(model, verbose=False)

    assert (small.get_layer("gate_a").units, small.get_layer("gate_b").units, small.get_layer("head").kernel.shape) \
        == (2, 2, (2, 2))
    x = [np.random.default_rng(seed).normal(size=(3, 4)).astype("float32") for seed in (0, 1)]
    assert_same_outputs(model, small, x)


def test_a_shared_layer_ties_its_calls_and_a_nested_model_keeps_its_boundaries():
    keras.utils.set_random_seed(0)
    inner_in = keras.Input((6,))
    inner = keras.Model(inner_in, L.Dense(6, name="inner_out")(L.Dense(5, activation="relu", name="inner_hidden")(
        inner_in)), name="inner")
    shared = L.Dense(6, activation="relu", name="shared")
    a, b = keras.Input((6,), name="a"), keras.Input((6,), name="b")
    merged = L.Add()([inner(shared(a)), shared(b)])
    model = keras.Model([a, b], L.Dense(2, name="head")(merged))
    names = [g.layers for g in tfprune.channel_groups(model)]
    assert ["inner_hidden", "inner_out"] in names
    assert not any("shared" in layers for layers in names)  # it feeds the nested model's frozen input
    zero_group(tfprune.channel_groups(model)[0])

    small = tfprune.shrink(model, verbose=False)

    assert small.get_layer("inner").get_layer("inner_hidden").units == 4
    x = [np.random.default_rng(0).normal(size=(3, 6)).astype("float32") for _ in range(2)]
    assert_same_outputs(model, small, x)


def test_shrink_strips_pruning_wrappers_and_the_result_saves_as_plain_keras(tmp_path):
    model = tfprune.prune_low_magnitude(
        keras.Sequential([keras.Input((8,)), L.Dense(6, activation="relu", name="hidden"), L.Dense(2, name="out")]),
        tfprune.ConstantSparsity(0.5, 0))
    hidden = model.get_layer("prune_low_magnitude_hidden").layer
    kernel, bias = hidden.get_weights()
    kernel[:, :2], bias[:2] = 0, 0
    hidden.set_weights([kernel, bias])

    small = tfprune.shrink(model, verbose=False)
    path = tmp_path / "small.keras"
    small.save(path)

    loaded = keras.models.load_model(path)  # no tfprune class inside
    assert loaded.get_layer("hidden").units == 4
    x = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_model_cost_counts_parameters_and_multiply_accumulates():
    model = keras.Sequential([keras.Input((10, 10, 3)), L.Conv2D(4, 3), L.Flatten(), L.Dense(5)])
    cost = tfprune.model_cost(model)
    assert cost.params == (27 * 4 + 4) + (8 * 8 * 4 * 5 + 5)
    assert cost.flops == 2 * (8 * 8 * 27 * 4 + 8 * 8 * 4 * 5)


def test_shrink_reports_what_it_saved(capsys):
    model = _residual_model()
    zero_some_groups(model, 0.5)
    tfprune.shrink(model)
    assert "parameters" in capsys.readouterr().out


def test_subclassed_model_gets_an_error_that_names_the_functional_api():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = L.Dense(3)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(np.zeros((1, 4), "float32"))
    with pytest.raises(ValueError, match="Functional API"):
        tfprune.shrink(net)


def test_unknown_layers_are_kept_with_a_warning_naming_them():
    @keras.saving.register_keras_serializable("test_structured")
    class Scale(L.Layer):
        def call(self, x):
            return x * 2.0

    inputs = keras.Input((4,))
    model = keras.Model(inputs, L.Dense(2)(Scale(name="scale")(L.Dense(3, name="before")(inputs))))
    with pytest.warns(UserWarning, match="'scale' \\(Scale: it is not a Keras built-in layer\\)"):
        groups = tfprune.channel_groups(model)
    assert groups == []


def test_layers_the_analysis_keeps_whole_are_counted_in_the_warning_and_the_first_named():
    inputs = keras.Input((8, 8, 4))
    x = inputs
    for index in range(5):
        x = L.Conv2D(4, 3, padding="same", groups=2, name=f"grouped{index}")(x)
    model = keras.Model(inputs, L.Dense(2)(L.GlobalAveragePooling2D()(x)))

    with pytest.warns(UserWarning, match=r"around 5 layer\(s\).*'grouped0', 'grouped1', 'grouped2' and 2 more "
                                         r"\(Conv2D: it is a grouped convolution"):
        tfprune.channel_groups(model)


def test_ignored_layers_are_kept_and_unknown_names_are_an_error():
    model = _residual_model()
    zero_some_groups(model, 0.5)
    assert not any("branch" in g.layers for g in tfprune.channel_groups(model, ignored_layers=["branch"]))
    with pytest.raises(ValueError, match="does not have: \\['brnch'\\]"):
        tfprune.shrink(model, ignored_layers=["brnch"])


def test_shrunk_cnn_exports_to_int8_and_passes_the_parity_check(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((16, 16, 3)), L.Conv2D(16, 3, activation="relu"), L.BatchNormalization(), L.MaxPooling2D(),
        L.Conv2D(16, 3, activation="relu"), L.GlobalAveragePooling2D(), L.Dense(10),
    ])
    randomize_batch_norm(model)
    zero_some_groups(model, 0.5)
    small = tfprune.shrink(model, verbose=False)
    x = np.random.default_rng(0).uniform(0, 1, (64, 16, 16, 3)).astype("float32")

    report = export_tflite(small, tmp_path / "small.tflite", quantize="int8", representative_data=x)

    # export_tflite raises unless parity holds; the figures are in the report
    assert report.parity["outputs"]["output_0"]["sqnr_db"] >= 12
    assert (tmp_path / "small.tflite").exists()


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["MobileNetV2", "ResNet50"])
def test_keras_applications_shrink_with_identical_outputs(architecture):
    keras.utils.set_random_seed(0)
    if architecture == "MobileNetV2":
        model = keras.applications.MobileNetV2(weights=None, alpha=0.35, input_shape=(96, 96, 3), classes=10,
                                               classifier_activation=None)
    else:
        model = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10,
                                            classifier_activation=None)
    randomize_batch_norm(model)
    zero_some_groups(model, 0.3)
    before = tfprune.model_cost(model)

    small = tfprune.shrink(model, verbose=False)

    after = tfprune.model_cost(small)
    assert after.params < 0.7 * before.params and after.flops < 0.7 * before.flops
    shape = model.input_shape[1:]
    assert_same_outputs(model, small, np.random.default_rng(0).uniform(0, 1, (2, *shape)).astype("float32"))


@pytest.mark.slow
def test_mobilenet_v3_keeps_the_squeeze_excite_gates_it_cannot_fold_and_names_them():
    """Its hard_sigmoid is `ReLU6(x + 3) / 6`, and the gate scales the block's features: no constant to fold."""
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV3Small(weights=None, input_shape=(96, 96, 3), classes=10,
                                                classifier_activation=None, include_preprocessing=False)
    randomize_batch_norm(model)
    excite = model.get_layer("expanded_conv_3_squeeze_excite_conv_1")
    squeeze = model.get_layer("expanded_conv_3_squeeze_excite_conv")
    zero_output_channel(excite, [0, 1, 2, 3])

    with pytest.raises(ValueError, match=r"Channels 0, 1, 2, 3 of 'expanded_conv_3_squeeze_excite_conv_1' \(output\) "
                                         r"are zeroed but become non-zero at '\w+', where it adds a constant"):
        tfprune.shrink(model, verbose=False)
    zero_output_channel(squeeze, [0, 1])  # relu(0) = 0: these go
    small = tfprune.shrink(model, verbose=False)

    assert (small.get_layer(excite.name).filters, small.get_layer(squeeze.name).filters) == (96, 22)
    assert_same_outputs(model, small, np.random.default_rng(0).uniform(0, 1, (2, 96, 96, 3)).astype("float32"))
