"""Model kinds that prune_low_magnitude accepts, and the errors for what it rejects."""

import keras
import numpy as np
import pytest

import tfprune
from tests.conftest import mlp

L = keras.layers


def _weights_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


def test_original_model_is_not_modified_and_starts_from_its_weights():
    model = mlp()
    before = [w.copy() for w in model.get_weights()]
    pruned = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(0.8, 0))
    tfprune.PruningController(pruned).update(0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert np.array_equal(pruned.layers[0].layer.bias.numpy(), model.layers[0].bias.numpy())
    x = np.random.default_rng(0).normal(size=(4, 64)).astype("float32")
    assert not np.allclose(pruned.predict(x, verbose=0), model.predict(x, verbose=0))


def test_functional_and_nested_models_are_pruned_throughout():
    inner = keras.Sequential([keras.Input((16,)), L.Dense(16, name="inner_dense")], name="inner")
    x = keras.Input((8,))
    h = L.Dense(16, name="outer_dense")(x)
    out = L.Dense(2, name="head")(inner(h))
    model = keras.Model(x, out)
    pruned = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(0.5, 0))
    names = sorted(w.layer.name for w in tfprune.PruningController(pruned).wrappers)
    assert names == ["head", "inner_dense", "outer_dense"]
    data = np.ones((2, 8), "float32")
    np.testing.assert_allclose(pruned.predict(data, verbose=0), model.predict(data, verbose=0), atol=1e-6)


class TwoLayerNet(keras.Model):
    def __init__(self, hidden=32, **kwargs):
        super().__init__(**kwargs)
        self.hidden = hidden
        self.body = L.Dense(hidden, activation="relu")
        self.drop = L.Dropout(0.1)
        self.head = L.Dense(10)

    def call(self, x, training=False):
        return self.head(self.drop(self.body(x), training=training))

    def get_config(self):
        return {"hidden": self.hidden}


def test_subclassed_model_is_copied_pruned_trained_and_stripped(digits):
    (x, y), _ = digits
    model = TwoLayerNet()
    model(x[:2])
    pruned = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(0.75, 0, frequency=5))
    assert isinstance(pruned, TwoLayerNet) and pruned is not model
    assert isinstance(pruned.body, tfprune.PruneLowMagnitude) and isinstance(model.body, L.Dense)
    assert len(pruned.trainable_weights) == 4
    np.testing.assert_allclose(pruned.predict(x[:8], verbose=0), model.predict(x[:8], verbose=0), atol=1e-6)
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    report = tfprune.sparsity_report(pruned)
    assert report["total"]["sparsity"] == pytest.approx(0.75, abs=1e-3)
    stripped = tfprune.strip_pruning(pruned)
    assert isinstance(stripped.body, L.Dense) and isinstance(stripped, TwoLayerNet)
    np.testing.assert_allclose(stripped.predict(x[:8], verbose=0), pruned.predict(x[:8], verbose=0), atol=1e-5)
    assert tfprune.sparsity_report(stripped)["total"]["sparsity"] == pytest.approx(0.75, abs=1e-3)


def test_list_of_layers_gives_wrappers():
    wrapped = tfprune.prune_low_magnitude([L.Dense(3), L.Conv2D(2, 3)])
    assert all(isinstance(w, tfprune.PruneLowMagnitude) for w in wrapped)


def test_pruning_an_already_pruned_model_is_an_error():
    pruned = tfprune.prune_low_magnitude(mlp())
    with pytest.raises(ValueError, match="already pruned"):
        tfprune.prune_low_magnitude(pruned)
    with pytest.raises(ValueError, match="already pruned"):
        tfprune.prune_low_magnitude(pruned.layers[0])


@pytest.mark.parametrize("thing", [42, "model.keras", np.zeros(3), None])
def test_non_keras_objects_are_rejected(thing):
    with pytest.raises(ValueError, match="must be a Keras layer"):
        tfprune.prune_low_magnitude(thing)


def test_bad_arguments_are_rejected_before_any_work():
    with pytest.raises(ValueError, match="scope"):
        tfprune.prune_low_magnitude(mlp(), scope="model")
    with pytest.raises(ValueError, match="N:M"):
        tfprune.prune_low_magnitude(mlp(), sparsity_m_by_n=(2, 4), scope="global")
    with pytest.raises(ValueError, match="must not exceed"):
        tfprune.prune_low_magnitude(mlp(), sparsity_m_by_n=(5, 4))


def test_kernel_whose_input_axis_is_not_a_multiple_of_n_is_rejected():
    model = keras.Sequential([keras.Input((6,)), L.Dense(4, name="odd")])
    with pytest.raises(ValueError, match="'odd/kernel'.*multiple of n=4"):
        tfprune.prune_low_magnitude(model, sparsity_m_by_n=(2, 4))


def test_block_size_that_does_not_fit_is_rejected():
    model = keras.Sequential([keras.Input((8,)), L.Dense(5, name="five")])
    with pytest.raises(ValueError, match="'five/kernel'"):
        tfprune.prune_low_magnitude(model, block_size=(1, 2))


def test_m_by_n_pruning_of_a_model():
    model = keras.Sequential([keras.Input((8,)), L.Dense(8), L.Dense(4)])
    pruned = tfprune.prune_low_magnitude(model, sparsity_m_by_n=(2, 4))
    tfprune.PruningController(pruned).update(0)
    for layer in pruned.layers:
        kernel = layer.layer.kernel.numpy()
        assert np.all((kernel.reshape(-1, 4, kernel.shape[1]) != 0).sum(axis=1) == 2)


def test_strip_pruning_rejects_non_models():
    with pytest.raises(ValueError, match="strip_pruning expects"):
        tfprune.strip_pruning("model")
