"""tfprune.graph.compat, the one module that reaches into Keras' private API: every accessor checked on the
installed Keras (a release that moves one fails here, by name), and no other module reaching in."""

import re
from pathlib import Path

import keras
import numpy as np
import pytest

from tfprune.graph import compat

L = keras.layers
PACKAGE = Path(__file__).parent.parent / "tfprune"
KERAS_PRIVATE = re.compile(
    r"keras\.src|\.(_flatten_layers|_layers|_tracker|_trainable_variables|_non_trainable_variables|_inbound_nodes"
    r"|_outbound_nodes|_keras_history|_nodes_by_depth|_functional|_learning_rate|_input_shape_arg|_query_dense"
    r"|_key_dense|_value_dense|_output_dense|_use_bias|_use_gate|_output_shape|_kernel)\b"
    r"|getattr\([^,]+, \"_(?!_|swaps_after_build)|object\.__setattr__"
)


def test_no_module_but_compat_reaches_into_keras_private_api():
    offenders = [f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
                 for path in sorted(PACKAGE.rglob("*.py")) if path.name != "compat.py"
                 for number, line in enumerate(path.read_text().splitlines(), 1) if KERAS_PRIVATE.search(line)]
    assert not offenders, "private Keras API outside tfprune/graph/compat.py:\n" + "\n".join(offenders)


class Holder(L.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.first, self.second = L.Dense(3, name="first"), L.Dense(2, name="second")

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(2,), name="scale")
        self.first.build(input_shape)
        self.second.build((None, 3))

    def call(self, x):
        return self.second(self.first(x)) * self.scale


@pytest.fixture
def model():
    inputs = keras.Input((4,), name="features")
    inner = keras.Sequential([keras.Input((2,)), L.Dense(2, name="inner_dense")], name="inner")
    return keras.Model(inputs, inner(Holder(name="holder")(inputs)))


def test_layers_held_and_the_variables_a_layer_creates_itself(model):
    holder = model.get_layer("holder")
    assert [layer.name for layer in compat.held_layers(holder)] == ["first", "second"]
    assert [v.name for v in compat.own_variables(holder)] == ["scale"]
    assert {"holder", "first", "second", "inner", "inner_dense"} <= {layer.name for layer in
                                                                     compat.flatten_layers(model)}
    assert "first" not in {layer.name for layer in compat.flatten_layers(model, recursive=False)}
    assert {"_layers", "_tracker"} <= compat.keras_attributes() and "first" not in compat.keras_attributes()


def test_a_built_layer_takes_a_new_held_layer_in_place_and_untracked_attributes_stay_out(model):
    holder = model.get_layer("holder")
    new = L.Dense(3, name="new")
    compat.replace_held_layer(holder, holder.first, new)
    assert [layer.name for layer in compat.held_layers(holder)] == ["new", "second"]
    compat.set_untracked(holder, "spare", [L.Dense(1)])
    assert len(compat.held_layers(holder)) == 2


def test_graph_structure_of_functional_and_sequential_models(model):
    assert compat.is_functional(model) and not compat.is_functional(L.Dense(1))
    assert compat.producer(model.inputs[0]).name == "features"
    assert compat.producer(model.outputs[0]).name == "inner"
    holder = model.get_layer("holder")
    assert len(compat.inbound_nodes(holder)) == 1 and compat.outbound_nodes(holder)[0].operation.name == "inner"
    by_depth = compat.nodes_by_depth(compat.functional_graph(model))
    assert compat.producer(model.outputs[0]) in {node.operation for node in by_depth[0]}
    assert compat.functional_graph(keras.Sequential([L.Dense(1)])) is None  # not built yet
    assert compat.nodes_by_depth(compat.functional_graph(model.get_layer("inner")))


def test_operation_classes_of_keras_ops_in_a_graph():
    x = keras.Input((4,))
    y = keras.ops.add(keras.ops.relu(x), x)
    assert isinstance(compat.producer(y), compat.numpy_ops.Add)
    assert isinstance(compat.inbound_nodes(compat.producer(y))[0].parent_nodes[0].operation, compat.nn_ops.Relu)


def test_inside_multi_head_attention():
    attention = L.MultiHeadAttention(num_heads=2, key_dim=3)
    attention(np.zeros((1, 5, 4), "float32"), np.zeros((1, 5, 4), "float32"))
    projections = compat.attention_projections(attention)
    assert list(projections) == ["query", "key", "value", "output"]
    assert all(isinstance(p, L.EinsumDense) for p in projections.values())
    assert projections["output"].kernel.shape == (2, 3, 4)
    assert compat.attention_uses_bias(attention) is True and not compat.attention_is_gated(attention)
    assert compat.attention_output_shape(attention) is None


def test_the_variable_behind_a_kernel_even_with_lora():
    dense = L.Dense(4)
    dense.build((None, 3))
    assert compat.weight_variable(dense, "kernel") is dense.kernel and compat.weight_variable(dense, "x") is None
    dense.enable_lora(2)
    assert isinstance(compat.weight_variable(dense, "kernel"), keras.Variable)
    assert not isinstance(dense.kernel, keras.Variable)  # the property adds the LoRA term


def test_a_layers_attributes_include_the_layers_it_holds():
    class Holder(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self._inner = L.Dense(2)  # private, as keras-hub keeps its sublayers

    holder = Holder()
    assert compat.layer_attributes(holder)["_inner"] is holder._inner  # also under torch, whose modules live apart


def test_variables_are_emptied_during_a_jax_fit_only():
    model = keras.Sequential([keras.Input((3,)), L.Dense(2)])
    model.compile("sgd", "mse")
    seen = []
    watch = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(
        compat.is_emptied(model.layers[0].kernel)))
    model.fit(np.ones((4, 3)), np.ones((4, 2)), batch_size=2, verbose=0, callbacks=[watch])
    assert seen == [keras.backend.backend() == "jax"] * 2  # the values live in JAX's train state meanwhile
    assert not compat.is_emptied(model.layers[0].kernel)  # and come back when fit ends


def test_optimizer_learning_rate_input_shape_and_tracing():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    assert compat.learning_rate_state(keras.optimizers.Adam(schedule)) is schedule
    assert isinstance(compat.learning_rate_state(keras.optimizers.Adam(0.1)), keras.Variable)
    layer = L.Dense(2, input_shape=(3,))
    assert compat.input_shape_argument(layer) == (3,)
    other = L.Dense(2)
    compat.set_input_shape_argument(other, (5,))
    assert keras.Sequential([other]).built
    spec = compat.compute_output_spec(keras.Sequential([keras.Input((3,)), L.Dense(2)]), keras.KerasTensor((7, 3)))
    assert tuple(spec.shape) == (7, 2)
    dense = keras.Sequential([keras.Input((3,)), L.Dense(2), L.Dense(1)])
    optimizer = keras.optimizers.SGD()
    optimizer.build(dense.trainable_variables)
    assert [compat.optimizer_variable_index(optimizer, v) for v in dense.trainable_variables] == [0, 1, 2, 3]


def test_print_msg_prints(capsys):
    compat.print_msg("hello from keras")
    assert "hello from keras" in capsys.readouterr().out
