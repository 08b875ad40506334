"""Running the mask update fast on each backend: one compiled call on TensorFlow, eager elsewhere.

The only TensorFlow-specific code of the pruning core, behind a backend check.

Example:

>>> double = one_graph_call(lambda: host_call(lambda x: 2 * x, [variable.value], [(variable.shape, "float32")]))
>>> doubled, = double()
"""

import keras
from keras import ops


def one_graph_call(fn):
    """`fn` traced into a single TensorFlow graph on the TensorFlow backend; unchanged on others.

    A mask update reads and assigns a few variables per layer. Run eagerly, or with arguments
    to convert, each costs a Python round trip, which dominates the update of small models.
    """
    if keras.backend.backend() != "tensorflow":
        return fn
    import tensorflow as tf

    return tf.function(fn, autograph=False)


def host_call(fn, tensors, outputs):
    """Calls the NumPy function `fn(*tensors)` from inside a `one_graph_call` (directly off TensorFlow).

    `outputs` lists the (shape, dtype) of the arrays `fn` returns.
    """
    if keras.backend.backend() != "tensorflow":
        return fn(*(ops.convert_to_numpy(t) for t in tensors))
    import tensorflow as tf

    results = tf.numpy_function(fn, list(tensors), [dtype for _, dtype in outputs], stateful=True)
    for result, (shape, _) in zip(results, outputs):
        result.set_shape(shape)
    return results
