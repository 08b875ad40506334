"""Export under other backends runs in a TensorFlow process: which custom classes it imports, which it refuses.
(Under `KERAS_BACKEND=jax` every export test of the suite goes through that process.)"""

import keras
import pytest

from tfprune.deploy.tensorflow_process import _custom_classes, _imported


class Doubling(keras.layers.Layer):
    def call(self, x):
        return 2 * x


def _model_with(layer):
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(2)(layer(inputs)))


def test_custom_layers_are_named_by_module_and_imported_back():
    classes = _custom_classes(_model_with(Doubling()))
    assert classes == {"Doubling": f"{__name__}:Doubling"}
    assert _imported(classes["Doubling"]) is Doubling


def test_a_layer_defined_in_the_running_script_is_refused_with_the_fix():
    in_script = type("InScript", (Doubling,), {"__module__": "__main__"})
    with pytest.raises(ValueError, match=r"\['InScript'\], defined in the running script.*move them to a module"):
        _custom_classes(_model_with(in_script()))
