"""A pruned copy starts from exactly the original's weights and strips to exactly the pruned ones, whatever
the model holds: Sequential, Functional, subclassed, users' containers, layers whose build() creates their
layers, keras-hub's Bert and GPT-2 backbones built from their constructors."""

import keras
import keras_hub
import numpy as np
import pytest

import tfprune
from tests.conftest import mlp
from tests.container_models import BlockNet, transformer_classifier
from tfprune.graph.containers import user_weights
from tfprune.apply.wrapper import pruning_wrappers

L = keras.layers


@keras.saving.register_keras_serializable("tfprune_tests")
class BuiltBlock(L.Layer):
    """Creates its layer in build(), as keras-hub's TransformerEncoder does."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.dense = L.Dense(self.units, activation="relu")
        self.dense.build(input_shape)
        self.scale = self.add_weight(shape=(self.units,), initializer="random_normal", name="scale")

    def call(self, x):
        return self.dense(x) * self.scale

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def _built_block_model():
    keras.utils.set_random_seed(0)
    x = keras.Input((12,))
    return keras.Model(x, L.Dense(3)(BuiltBlock(16)(x)))


def _subclassed():
    keras.utils.set_random_seed(0)
    model = BlockNet()
    model(np.zeros((1, 8), "float32"))
    return model


def _backbone_inputs(model, batch=2):
    rng = np.random.default_rng(0)
    names = [t.name for t in model.inputs]
    arrays = {"token_ids": rng.integers(0, 1000, (batch, 32)), "segment_ids": np.zeros((batch, 32)),
              "padding_mask": np.ones((batch, 32))}
    return {name: arrays[name].astype("int32") for name in names}


def _bert():
    keras.utils.set_random_seed(0)
    return keras_hub.models.BertBackbone(vocabulary_size=1000, num_layers=2, num_heads=2, hidden_dim=64,
                                         intermediate_dim=128, max_sequence_length=32)


def _gpt2():
    keras.utils.set_random_seed(0)
    return keras_hub.models.GPT2Backbone(vocabulary_size=1000, num_layers=2, num_heads=2, hidden_dim=64,
                                         intermediate_dim=128, max_sequence_length=32)


def _sample(model):
    inputs = getattr(model, "inputs", None) or [keras.KerasTensor((None, 8))]  # BlockNet takes 8 features
    if len(inputs) > 1:
        return _backbone_inputs(model)
    if inputs[0].dtype.startswith("int"):
        return np.random.default_rng(0).integers(0, 50, (2, *inputs[0].shape[1:])).astype("int32")
    return np.random.default_rng(0).normal(size=(2, *inputs[0].shape[1:])).astype("float32")


def _outputs(model, x):
    return [np.asarray(t) for t in keras.tree.flatten(model(x))]


def assert_same_weights(original, other):
    expected, actual = user_weights(original), user_weights(other)
    assert [v.shape for v in expected] == [v.shape for v in actual]
    for a, b in zip(expected, actual):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=f"{a.path} differs from {b.path}")


MODELS = {
    "sequential": mlp,
    "functional with a nested model": lambda: _functional_nested(),
    "subclassed with containers": _subclassed,
    "keras.io transformer": transformer_classifier,
    "layer built in build()": _built_block_model,
    "keras-hub Bert": _bert,
    "keras-hub GPT-2": _gpt2,
}


def _functional_nested():
    keras.utils.set_random_seed(0)
    inner = keras.Sequential([keras.Input((16,)), L.Dense(16), L.BatchNormalization()], name="inner")
    x = keras.Input((8,))
    return keras.Model(x, L.Dense(2)(inner(L.Dense(16)(x))))


@pytest.mark.parametrize("name", list(MODELS))
def test_a_pruned_copy_holds_every_weight_of_the_original_and_strips_to_them(name):
    model = MODELS[name]()
    x = _sample(model)
    pruned = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(0.5, 0))
    assert pruning_wrappers(pruned)
    assert_same_weights(model, pruned)
    for expected, actual in zip(_outputs(model, x), _outputs(pruned, x)):
        np.testing.assert_array_equal(expected, actual)
    assert_same_weights(model, tfprune.strip_pruning(pruned))


def _cnn():
    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8, 3))
    h = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3)(x)))
    return keras.Model(x, L.Dense(2)(L.GlobalAveragePooling2D()(L.Conv2D(8, 3, activation="relu")(h))))


@pytest.mark.parametrize("factory", [mlp, _cnn])
def test_a_channel_pruned_copy_holds_every_weight_of_the_original(factory):
    model = factory()
    pruned = tfprune.prune_channels(model, tfprune.ConstantSparsity(0.5, 0))
    assert pruning_wrappers(pruned)
    assert_same_weights(model, pruned)
    assert_same_weights(model, tfprune.strip_pruning(pruned))


@pytest.mark.parametrize("backbone", [_bert, _gpt2])
def test_keras_hub_backbones_are_pruned_to_target_inside_their_encoder_layers_and_round_trip(backbone, tmp_path):
    model = backbone()
    x = _backbone_inputs(model, batch=16)
    pruned = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(0.8, 0, frequency=1))
    inside = {w.layer.name for w in pruning_wrappers(pruned) if w.pruned_weights}
    assert {"position_embedding", "feedforward_intermediate_dense", "feedforward_output_dense"} <= inside
    assert {"self_attention_layer", "self_attention"} & inside  # MultiHeadAttention, pruned whole

    pruned.compile("adam", "mse")
    targets = keras.tree.map_structure(np.zeros_like, pruned.predict(x, verbose=0))
    pruned.fit(x, targets, epochs=1, batch_size=8, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    report = tfprune.sparsity_report(pruned)
    assert report["total"]["sparsity"] == pytest.approx(0.8, abs=0.01)

    pruned.save(tmp_path / "pruned.keras")
    loaded = tfprune.load_model(tmp_path / "pruned.keras")
    assert_same_weights(pruned, loaded)
    for expected, actual in zip(_outputs(pruned, x), _outputs(loaded, x)):
        np.testing.assert_allclose(expected, actual, atol=1e-6)
    stripped = tfprune.strip_pruning(loaded)
    assert not pruning_wrappers(stripped)
    assert_same_weights(loaded, stripped)


def test_a_layer_whose_copy_cannot_hold_its_weights_is_an_error_not_a_reinitialisation():
    class Forgetful(L.Layer):
        """Its config forgets `units`, so a copy builds a layer of another size."""

        def __init__(self, units=4, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape):
            self.dense = L.Dense(self.units)
            self.dense.build(input_shape)
            self.scale = self.add_weight(shape=(self.units,), initializer="ones")

        def call(self, x):
            return self.dense(x) * self.scale

        def get_config(self):
            return {"name": self.name}

    x = keras.Input((8,))
    model = keras.Model(x, Forgetful(6)(x))
    with pytest.raises(ValueError, match="Cannot copy layer 'forgetful'.*copy=False"):
        tfprune.prune_low_magnitude(model)


def test_a_layer_built_in_build_is_pruned_inside_saved_and_loaded_with_its_wrapper(tmp_path):
    model = _built_block_model()
    x = np.random.default_rng(0).normal(size=(32, 12)).astype("float32")
    pruned = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(0.5, 0, frequency=1))
    block = next(layer for layer in pruned.layers if isinstance(layer, BuiltBlock))
    assert isinstance(block.dense, tfprune.PruneLowMagnitude)
    pruned.compile("adam", "mse")
    pruned.fit(x, np.zeros((32, 3)), epochs=1, batch_size=8, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    assert np.mean(block.dense.layer.kernel.numpy() == 0) == pytest.approx(0.5, abs=0.02)
    pruned.save(tmp_path / "built.keras")
    loaded = tfprune.load_model(tmp_path / "built.keras")
    loaded_block = next(layer for layer in loaded.layers if isinstance(layer, BuiltBlock))
    assert isinstance(loaded_block.dense, tfprune.PruneLowMagnitude)  # swapped in again after build()
    assert_same_weights(pruned, loaded)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), pruned.predict(x, verbose=0))


@keras.saving.register_keras_serializable("tfprune_tests")
class RebuildsItsLayer(L.Layer):
    """Creates its Dense in __init__ and builds it in build(), as Keras' guide recommends; holds it twice."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dense = L.Dense(units)
        self.alias = self.dense  # the same layer at a second attribute

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, x):
        return self.alias(self.dense(x))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@pytest.mark.parametrize("copy", [True, False])
def test_a_layer_built_again_by_its_container_and_held_twice_is_wrapped_once_and_saves(copy, tmp_path):
    keras.utils.set_random_seed(0)
    x = keras.Input((8,))
    model = keras.Model(x, RebuildsItsLayer(8)(x))
    data = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    expected = model.predict(data, verbose=0)
    pruned = tfprune.prune_low_magnitude(model, copy=copy)
    container = pruned.layers[1]
    assert container.dense is container.alias and len(pruning_wrappers(pruned)) == 1
    assert len(container.dense.masks) == 1  # built once, not twice
    pruned.save(tmp_path / "m.keras")
    loaded = tfprune.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(data, verbose=0), expected, atol=1e-6)


def test_a_loaded_keras_hub_model_resumes_pruning_before_it_is_called(tmp_path):
    """keras-hub's encoder builds on load without calling its Dropout layers: their wrappers (the step only) are
    built when a controller needs them, instead of failing `fit`."""
    pruned = tfprune.prune_low_magnitude(_bert(), tfprune.ConstantSparsity(0.5, begin_step=1, frequency=1))
    pruned.save(tmp_path / "bert.keras")
    loaded = tfprune.load_model(tmp_path / "bert.keras")
    controller = tfprune.PruningController(loaded)
    controller.prune_to(0.5)
    assert tfprune.sparsity_report(loaded)["total"]["sparsity"] == pytest.approx(0.5, abs=0.01)
