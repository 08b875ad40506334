"""The one layer table: magnitude pruning, channel pruning and FLOPs read the same entry, and
`register_layer` lets a user's subclass of a Keras layer take part in all three."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.layers.table import kind_of, rule_by_class

L = keras.layers


@keras.saving.register_keras_serializable("tfprune_tests")
class LoggingDense(L.Dense):
    """A user's Dense whose call uses the kernel as Dense does."""

    def call(self, x):
        return super().call(x)


def _model(hidden_class):
    keras.utils.set_random_seed(0)
    x = keras.Input((8,))
    return keras.Model(x, L.Dense(3, name="head")(hidden_class(16, activation="relu", name="hidden")(x)))


def test_one_entry_answers_for_weights_channels_and_flops():
    conv = L.Conv2D(8, 3)
    kind = kind_of(conv)
    assert kind.weights[0][0] == "kernel" and kind.flops is not None
    assert rule_by_class(conv)[0] is kind.channels
    assert kind_of(L.BatchNormalization()).weights == () and kind_of(L.PReLU()).weights is None


def test_a_users_subclass_takes_part_only_once_registered():
    class Unregistered(L.Dense):
        pass

    with pytest.raises(ValueError, match=r"register_layer\(Unregistered, like=keras.layers.Dense\)"):
        tfprune.prune_low_magnitude(_model(Unregistered))
    assert rule_by_class(Unregistered(2))[1] == "it is not a Keras built-in layer"

    tfprune.register_layer(LoggingDense, like=L.Dense)
    model = _model(LoggingDense)
    pruned = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(0.5, 0))
    assert {w.layer.name for w in tfprune.PruningController(pruned).wrappers} == {"hidden", "head"}

    channels = tfprune.prune_channels(model, tfprune.ConstantSparsity(0.5, 0, frequency=1))
    x = np.random.default_rng(0).normal(size=(16, 8)).astype("float32")
    channels.compile("adam", "mse")
    channels.fit(x, np.zeros((16, 3)), batch_size=8, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    small = tfprune.shrink(channels, verbose=False)
    assert type(small.get_layer("hidden")) is LoggingDense and small.get_layer("hidden").units == 8
    np.testing.assert_allclose(small.predict(x, verbose=0), channels.predict(x, verbose=0), atol=1e-5)
    assert tfprune.model_cost(small).flops == 2 * (8 * 8 + 8 * 3)


def test_register_layer_refuses_what_it_cannot_mean():
    with pytest.raises(ValueError, match="must be a Keras layer class that tfprune knows and that LoggingDense"):
        tfprune.register_layer(LoggingDense, like=L.Conv2D)  # not its base
    with pytest.raises(ValueError, match="takes a Keras layer class"):
        tfprune.register_layer(object, like=L.Dense)
