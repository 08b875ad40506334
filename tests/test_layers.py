"""Every built-in prunable layer type: wrapped, trained one epoch, masks exact, strip preserves outputs."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune import registry

L = keras.layers


def _seq(input_shape, *layers):
    return keras.Sequential([keras.Input(input_shape), *layers, L.Flatten(), L.Dense(3)])


def _mha_model():
    x = keras.Input((6, 8))
    y = L.MultiHeadAttention(num_heads=2, key_dim=4)(x, x)
    return keras.Model(x, L.Dense(3)(L.Flatten()(y)))


CASES = {
    "Dense": lambda: _seq((8,), L.Dense(8)),
    "EinsumDense": lambda: _seq((8,), L.EinsumDense("ab,bc->ac", output_shape=8)),
    "Conv1D": lambda: _seq((10, 4), L.Conv1D(8, 3)),
    "Conv2D": lambda: _seq((6, 6, 4), L.Conv2D(8, 3)),
    "Conv3D": lambda: _seq((4, 4, 4, 4), L.Conv3D(8, 3)),
    "Conv1DTranspose": lambda: _seq((5, 4), L.Conv1DTranspose(8, 3)),
    "Conv2DTranspose": lambda: _seq((4, 4, 4), L.Conv2DTranspose(8, 3)),
    "Conv3DTranspose": lambda: _seq((3, 3, 3, 4), L.Conv3DTranspose(8, 3)),
    "DepthwiseConv1D": lambda: _seq((10, 4), L.DepthwiseConv1D(3, depth_multiplier=2)),
    "DepthwiseConv2D": lambda: _seq((6, 6, 4), L.DepthwiseConv2D(3, depth_multiplier=2)),
    "SeparableConv1D": lambda: _seq((10, 4), L.SeparableConv1D(8, 3, depth_multiplier=2)),
    "SeparableConv2D": lambda: _seq((6, 6, 4), L.SeparableConv2D(8, 3, depth_multiplier=2)),
    "Embedding": lambda: _seq((5,), L.Embedding(20, 8)),
    "MultiHeadAttention": _mha_model,
    "SimpleRNN": lambda: _seq((5, 4), L.SimpleRNN(8)),
    "LSTM": lambda: _seq((5, 4), L.LSTM(8)),
    "GRU": lambda: _seq((5, 4), L.GRU(8)),
    "Bidirectional(LSTM)": lambda: _seq((5, 4), L.Bidirectional(L.LSTM(4))),
    "TimeDistributed(Dense)": lambda: _seq((5, 4), L.TimeDistributed(L.Dense(8))),
    "RNN(LSTMCell, GRUCell)": lambda: _seq((5, 4), L.RNN([L.LSTMCell(6), L.GRUCell(8)])),
}
EXPECTED_WEIGHTS = {"SeparableConv1D": 2, "SeparableConv2D": 2, "MultiHeadAttention": 4, "SimpleRNN": 2,
                    "LSTM": 2, "GRU": 2, "Bidirectional(LSTM)": 4, "RNN(LSTMCell, GRUCell)": 4}


def _inputs(model, n=32):
    shape = model.inputs[0].shape[1:]
    rng = np.random.default_rng(0)
    if model.layers[0].__class__ is L.Embedding:
        return rng.integers(0, 20, size=(n, *shape))
    return rng.normal(size=(n, *shape)).astype("float32")


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_is_pruned_to_exact_sparsity_and_strips_to_same_outputs(name):
    keras.utils.set_random_seed(0)
    model = CASES[name]()
    x = _inputs(model)
    y = np.arange(len(x)) % 3
    pruned = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(0.5, 0, frequency=1))
    wrapped = [layer for layer in pruned._flatten_layers() if isinstance(layer, tfprune.PruneLowMagnitude) and layer.masks]
    assert len(wrapped) == 2  # the layer under test and the head
    assert len(wrapped[0].masks) == EXPECTED_WEIGHTS.get(name, 1)
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    values = dict(zip(map(id, wrapped[0].layer.weights), wrapped[0].masked_values()))
    for w in wrapped[0].pruned_weights:
        assert int((values[id(w)] == 0).sum()) == round(0.5 * values[id(w)].size), w.path
    stripped = tfprune.strip_pruning(pruned)
    assert not any(isinstance(layer, tfprune.PruneLowMagnitude) for layer in stripped._flatten_layers())
    np.testing.assert_allclose(stripped.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-5)
    target = next(layer for layer in stripped.layers if type(layer).__name__ == name.split("(")[0])
    assert all(np.mean(keras.ops.convert_to_numpy(w) == 0) == 0.5 for w in registry.prunable_weights(target))


def test_biases_are_not_pruned():
    model = _seq((8,), L.Dense(8, bias_initializer="ones"))
    pruned = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(0.9, 0))
    tfprune.PruningController(pruned).update(0)
    dense = pruned.layers[0].layer
    assert np.all(keras.ops.convert_to_numpy(dense.bias) == 1)
    assert np.mean(keras.ops.convert_to_numpy(dense.kernel) == 0) == pytest.approx(0.9, abs=0.01)


class ScaledDense(L.Layer, tfprune.PrunableLayer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), name="w")
        self.scale = self.add_weight(shape=(), initializer="ones", name="scale")

    def call(self, x):
        return self.scale * (x @ self.w)

    def get_prunable_weights(self):
        return [self.w]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_custom_prunable_layer_prunes_only_the_weights_it_names():
    model = keras.Sequential([keras.Input((8,)), ScaledDense(6)])
    pruned = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(0.5, 0))
    tfprune.PruningController(pruned).update(0)
    wrapper = pruned.layers[0]
    assert [w.name for w in wrapper.pruned_weights] == ["w"]
    assert np.mean(keras.ops.convert_to_numpy(wrapper.layer.w) == 0) == 0.5


class Unknown(L.Layer):
    def build(self, input_shape):
        self.v = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.v


def test_unknown_weighted_layer_is_an_error_naming_it_and_the_fix():
    model = keras.Sequential([keras.Input((4,)), Unknown(name="mystery"), L.Dense(2)])
    with pytest.raises(ValueError, match="'mystery'.*PrunableLayer.*strict=False"):
        tfprune.prune_low_magnitude(model)


class StandardizedConv2D(L.Conv2D):
    """keras.io's weight standardization: a zeroed raw kernel entry is not zero in the kernel used."""

    def convolution_op(self, inputs, kernel):
        mean, var = keras.ops.moments(kernel, axes=[0, 1, 2], keepdims=True)
        return keras.ops.conv(inputs, (kernel - mean) / keras.ops.sqrt(var + 1e-10), padding="valid")


class PrunableStandardizedConv2D(StandardizedConv2D, tfprune.PrunableLayer):
    def get_prunable_weights(self):
        return [self.kernel]


def test_a_users_subclass_of_a_supported_layer_must_name_its_weights_as_in_tfmot():
    model = keras.Sequential([keras.Input((6, 6, 2)), StandardizedConv2D(4, 3, name="ws")])
    with pytest.raises(ValueError, match="'ws' .StandardizedConv2D. subclasses Conv2D.*PrunableLayer.*self.kernel"):
        tfprune.prune_low_magnitude(model)
    model = keras.Sequential([keras.Input((6, 6, 2)), PrunableStandardizedConv2D(4, 3, name="ws")])
    pruned = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(0.5, 0))
    assert [w.path for w in pruned.layers[0].pruned_weights] == ["ws/kernel"]


def test_non_strict_mode_leaves_unknown_layer_dense_with_a_warning():
    model = keras.Sequential([keras.Input((4,)), Unknown(name="mystery"), L.BatchNormalization(), L.Dense(2)])
    with pytest.warns(UserWarning, match="'mystery'.*stays dense"):
        pruned = tfprune.prune_low_magnitude(model, strict=False)
    # As in tfmot, layers with nothing to prune are wrapped too (without masks); unknown ones are not.
    assert [type(layer).__name__ for layer in pruned.layers] == ["Unknown", "PruneLowMagnitude", "PruneLowMagnitude"]
    assert [len(layer.masks) for layer in pruned.layers[1:]] == [0, 1]


def test_pruning_policy_can_exclude_layers():
    class SkipFirst(tfprune.PruningPolicy):
        def allow_pruning(self, layer):
            return layer.name != "first"

    model = keras.Sequential([keras.Input((4,)), L.Dense(4, name="first"), L.Dense(2, name="second")])
    pruned = tfprune.prune_low_magnitude(model, pruning_policy=SkipFirst())
    assert [type(layer).__name__ for layer in pruned.layers] == ["Dense", "PruneLowMagnitude"]
    assert pruned.layers[0].get_weights()[0] is not model.layers[0].get_weights()[0]  # copied, not shared


def test_single_unprunable_layer_is_rejected():
    with pytest.raises(ValueError, match="'lstm2d'.*not prunable"):
        tfprune.prune_low_magnitude(L.ConvLSTM2D(2, 3, name="lstm2d"))


def test_single_weightless_layer_is_wrapped_without_masks_as_in_tfmot():
    wrapper = tfprune.prune_low_magnitude(L.Dropout(0.5, name="drop"))
    model = keras.Sequential([keras.Input((4,)), wrapper])
    assert wrapper.built and wrapper.masks == [] and wrapper.pruned_weights == []
    np.testing.assert_array_equal(model.predict(np.ones((2, 4)), verbose=0), np.ones((2, 4)))
