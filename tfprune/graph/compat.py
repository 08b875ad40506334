"""The one place where tfprune reaches into Keras' private API.

Keras 3 has no public way to ask for some things a pruning library needs: the layers a
layer holds, the variables it created itself, a Functional model's nodes, the projections
inside a `MultiHeadAttention`. Each is read here, by one function that says what it
returns, and nowhere else (a test keeps it so). `tests/test_compat.py` checks every one on
the installed Keras, so a Keras release that moves one fails there, by name, instead of
somewhere inside a pruning run.

Tested with Keras 3.5 to 3.15.
"""

import functools

import keras
from keras.src.backend import compute_output_spec  # noqa: F401 - traces without computing, on every backend
from keras.src.models.functional import Functional
from keras.src.ops import nn as nn_ops  # noqa: F401 - the operation classes of keras.ops.relu, ...
from keras.src.ops import numpy as numpy_ops  # noqa: F401 - ... and of keras.ops.add, ...
from keras.src.utils.io_utils import print_msg  # noqa: F401 - prints as Keras' own callbacks do


def is_functional(model):
    """True for a Functional model (a Sequential is one once built, and so are keras-hub's backbones)."""
    return isinstance(model, Functional)


def flatten_layers(layer, recursive=True):
    """The layers inside `layer`, depth first, nested ones included unless `recursive=False`.

    Layers held by wrappers and by users' container layers count; `layer` itself does not.
    """
    return list(layer._flatten_layers(include_self=False, recursive=recursive))


def held_layers(layer):
    """The layers `layer` holds directly, in the order it created them."""
    return list(layer._layers)


def own_variables(layer):
    """The variables `layer` created itself (`add_weight`), not those of the layers it holds."""
    return list(layer._trainable_variables) + list(layer._non_trainable_variables)


def layer_attributes(layer):
    """The attributes a layer was given, by name: its `__dict__`, with the layers that the torch backend keeps in
    torch's `_modules` (a Keras layer is a `torch.nn.Module` there)."""
    attributes = dict(vars(layer))
    attributes.update(attributes.get("_modules") or {})
    return attributes


@functools.cache
def keras_attributes():
    """Names of the attributes Keras itself sets on every layer and model (`_layers`, `_tracker`, ...)."""
    return frozenset(vars(keras.layers.Layer())) | frozenset(vars(keras.Model()))


def replace_held_layer(owner, old, new):
    """Makes `owner` hold layer `new` where it held `old` (in its layer order), even once it is built."""
    tracker = owner._tracker
    if tracker.is_in_store("layers", old):
        tracker.replace_tracked_value("layers", old, new)
    else:
        locked, tracker.locked = tracker.locked, False
        tracker.track(new)
        tracker.locked = locked


def set_untracked(layer, name, value):
    """Sets an attribute that Keras must not track (layers in it are held elsewhere)."""
    object.__setattr__(layer, name, value)


def producer(tensor):
    """The layer or operation whose output a symbolic tensor is (an `Input` for model inputs)."""
    return tensor._keras_history.operation


def inbound_nodes(layer):
    """The calls of `layer` in the graphs it belongs to, as Keras nodes (`.arguments`, `.parent_nodes`)."""
    return list(layer._inbound_nodes)


def outbound_nodes(layer):
    """The calls that take an output of `layer` as input, as Keras nodes (`.operation`)."""
    return list(layer._outbound_nodes)


def functional_graph(model):
    """The Functional graph of a Functional model, or of a Sequential one (None until it is built)."""
    return getattr(model, "_functional", None) if isinstance(model, keras.Sequential) else model


def nodes_by_depth(graph):
    """{depth: [nodes]} of a `functional_graph`; the outputs are at depth 0."""
    return graph._nodes_by_depth


def attention_projections(layer):
    """{"query", "key", "value", "output"}: the `EinsumDense` layers inside a built `MultiHeadAttention`."""
    return {"query": layer._query_dense, "key": layer._key_dense, "value": layer._value_dense,
            "output": layer._output_dense}


def attention_uses_bias(layer):
    return layer._use_bias


def attention_is_gated(layer):
    """True for a `MultiHeadAttention` with an output gate (Keras 3.12 and later can add one)."""
    return bool(getattr(layer, "_use_gate", False))


def attention_output_shape(layer):
    """The `output_shape` a `MultiHeadAttention` was given (None: the query's last axis)."""
    return layer._output_shape


def weight_variable(layer, name):
    """The `keras.Variable` behind a layer's weight attribute `name`, or None.

    Dense, Conv and Embedding keep it in `_kernel`, behind a `kernel` property that may add LoRA terms.
    """
    value = getattr(layer, "_" + name, None)
    if not isinstance(value, keras.Variable):
        value = getattr(layer, name, None)
    return value if isinstance(value, keras.Variable) else None


def is_emptied(variable):
    """True if the variable holds no value: Keras' JAX `fit` empties the model's variables while it runs (the
    values live in its train state) and refills them when it ends normally."""
    return variable._value is None


def optimizer_variable_index(optimizer, variable):
    """The position of `variable` among the variables an optimizer was built for, as its `update_step` receives it
    (TensorFlow hands it the backend variable, not the Keras one)."""
    return optimizer._get_variable_index(variable)


def optimizer_trainable_variables(optimizer):
    """The variables an optimizer was built for, in the order of the gradients `apply(grads)` takes without them."""
    return optimizer._trainable_variables


def optimizer_slots(optimizer, variable):
    """The optimizer's state of `variable` (momentum, Adam's moments, ...): the variables its
    `add_variable_from_reference` made, named after the variable's path and of its shape."""
    prefix = variable.path.replace("/", "_") + "_"
    return [slot for slot in optimizer.variables
            if slot.name.startswith(prefix) and tuple(slot.shape) == tuple(variable.shape)]


def learning_rate_state(optimizer):
    """What the optimizer keeps its learning rate in: a variable, a `LearningRateSchedule` or a callable."""
    return optimizer._learning_rate


def input_shape_argument(layer):
    """The `input_shape=` a layer was created with (which builds a Sequential model it starts), or None."""
    return getattr(layer, "_input_shape_arg", None)


def set_input_shape_argument(layer, shape):
    layer._input_shape_arg = shape
