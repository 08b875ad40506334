"""`model_cost` inside custom layers."""

import keras
import numpy as np
import pytest

import tfprune

L = keras.layers


class ConvBlock(keras.layers.Layer):
    """A custom container that creates its sublayers in build(), as keras-hub's TransformerEncoder does."""

    def build(self, input_shape):
        self.conv = L.Conv2D(8, 3, padding="same")
        self.conv.build(input_shape)
        self.head = Head()
        self.head.build((*input_shape[:-1], 8))

    def call(self, x):
        return self.head(self.conv(x))


class Head(keras.layers.Layer):
    """Nested one level deeper, and calling its Dense twice."""

    def build(self, input_shape):
        self.dense = L.Dense(input_shape[-1])
        self.dense.build(input_shape)

    def call(self, x):
        return self.dense(keras.ops.relu(self.dense(x)))


def test_model_cost_counts_layers_inside_custom_layers_at_every_call():
    inputs = keras.Input((5, 5, 3))
    block = ConvBlock()
    hidden = block(inputs)
    outputs = L.Dense(2)(L.Flatten()(block(L.Conv2D(3, 1)(hidden))))  # the block is shared: called twice
    model = keras.Model(inputs, outputs)

    positions = 5 * 5
    block_macs = positions * (3 * 3 * 3 * 8) + 2 * positions * (8 * 8)
    macs = 2 * block_macs + positions * (8 * 3) + (positions * 8) * 2
    assert tfprune.model_cost(model).flops == 2 * macs
    assert "call" not in block.conv.__dict__  # the trace leaves the layers as they were


def test_model_cost_counts_a_keras_hub_transformer_per_token():
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.BertBackbone(vocabulary_size=1000, num_layers=2, num_heads=2, hidden_dim=64,
                                             intermediate_dim=128, max_sequence_length=32)
    hidden, intermediate = 64, 128
    attention = 4 * hidden * hidden + 2 * hidden  # q, k, v, o projections; scores and weighted sums over 1 token
    feed_forward = 2 * hidden * intermediate
    pooler = hidden * hidden
    assert tfprune.model_cost(backbone).flops == 2 * (2 * (attention + feed_forward) + pooler)  # 139,776


def test_model_cost_counts_a_time_distributed_layer_at_every_step():
    model = keras.Sequential([keras.Input((5, 8)), L.TimeDistributed(L.Dense(4))])
    assert tfprune.model_cost(model).flops == 2 * 5 * 8 * 4


def test_model_cost_of_a_model_without_known_inputs_says_how_to_build_it():
    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="net")
            self.dense = L.Dense(3)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(np.zeros((1, 4), "float32"))
    with pytest.raises(ValueError, match="'net'.*keras.Input"):
        tfprune.model_cost(net)

