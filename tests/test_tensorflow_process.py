"""Export under other backends runs in a TensorFlow process: which custom objects the child imports, which the
parent refuses, and the check that the child's model computes what the caller's does. (Under `KERAS_BACKEND=jax`
every export test of the suite goes through that process.)"""

import keras
import numpy as np
import pytest

from tfprune.deploy.tensorflow_process import _check_same_outputs, _custom_objects, _imported


class Doubling(keras.layers.Layer):
    def call(self, x):
        return 2 * x


def halved_relu(x):
    return keras.ops.relu(x) / 2


def _model_with(layer, activation=None):
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(2, activation=activation)(layer(inputs)))


def test_custom_layers_and_functions_are_named_by_module_and_imported_back():
    objects = _custom_objects(_model_with(Doubling(), activation=halved_relu))
    assert objects == {"Doubling": f"{__name__}:Doubling", "halved_relu": f"{__name__}:halved_relu"}
    assert _imported(objects["Doubling"]) is Doubling and _imported(objects["halved_relu"]) is halved_relu


def test_objects_defined_in_the_running_script_or_in_a_function_are_refused_with_the_fix():
    in_script = type("InScript", (Doubling,), {"__module__": "__main__"})
    with pytest.raises(ValueError, match=r"\['InScript'\], defined in the running script.*move them to a module"):
        _custom_objects(_model_with(in_script()))

    class Local(Doubling):
        pass

    with pytest.raises(ValueError, match=r"Local.*inside a function"):
        _custom_objects(_model_with(Local()))


def test_a_model_that_does_not_survive_its_keras_file_writes_nothing(tmp_path):
    written = tmp_path / "m.tflite"
    written.write_bytes(b"the user's earlier file")
    _check_same_outputs([np.ones((4, 2))], [np.ones((4, 2)) + 1e-6], written)  # float noise: kept
    with pytest.raises(ValueError, match="differs from this model's.*Nothing was written"):
        _check_same_outputs([np.ones((4, 2))], [np.zeros((4, 2))], written)
    assert written.read_bytes() == b"the user's earlier file"  # checked before converting: nothing was replaced
