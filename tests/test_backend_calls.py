"""The compiled mask-update call: NumPy on the host inside one graph call."""

import keras
import numpy as np

from tfprune.backend_calls import host_call, one_graph_call


def test_host_numpy_runs_inside_one_compiled_call_with_static_shapes():
    variable = keras.Variable(np.arange(6, dtype="float32").reshape(2, 3))
    calls = []

    def on_host(value):
        calls.append(type(value))
        return (value > 2), np.asarray(len(calls), dtype=np.int64)

    def update():
        keep, count = host_call(on_host, [variable.value], [((2, 3), "bool"), ((), "int64")])
        assert keep.shape == (2, 3) and count.shape == ()  # known while tracing
        variable.assign(keras.ops.where(keep, variable.value, 0.0))
        return count

    compiled = one_graph_call(update)
    assert int(compiled()) == 1 and int(compiled()) == 2  # the host function runs at every call
    assert all(t is np.ndarray for t in calls)
    np.testing.assert_array_equal(variable.numpy(), [[0, 0, 0], [3, 4, 5]])
