"""`model_cost` inside custom layers, and `sparsity_report`'s count of weights alive under a zero mask."""

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


def _two_dense_layers():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8,)), L.Dense(6, name="hidden"), L.Dense(3, name="out")])


def test_sparsity_report_counts_a_pruned_weight_written_back_under_its_mask():
    pruned = tfprune.prune_low_magnitude(_two_dense_layers(), tfprune.ConstantSparsity(0.5, 0))
    tfprune.PruningController(pruned).update(0)
    report = tfprune.sparsity_report(pruned)
    assert report["total"]["nonzero_under_mask"] == 0 and report["total"]["sparsity"] == pytest.approx(0.5, abs=0.02)

    wrapper = pruned.get_layer("prune_low_magnitude_hidden")
    kernel = wrapper.layer.kernel
    masked = np.argwhere(keras.ops.convert_to_numpy(wrapper.masks[0]) == 0)[:3]
    value = keras.ops.convert_to_numpy(kernel).copy()
    value[tuple(masked.T)] = 0.5  # what an optimizer step around the mask constraint leaves behind
    kernel.assign(value)
    with pytest.warns(UserWarning, match=r"3 pruned weight entries are non-zero.*'hidden/kernel' \(3\).*optimizer"):
        leaked = tfprune.sparsity_report(pruned)

    rows = {row["weight"]: row for row in leaked["layers"]}
    assert rows["hidden/kernel"]["nonzero_under_mask"] == 3 and rows["out/kernel"]["nonzero_under_mask"] == 0
    assert leaked["total"]["nonzero_under_mask"] == 3
    assert leaked["total"]["nonzeros"] == report["total"]["nonzeros"]  # weight * mask is unchanged
    assert "! 3 entries are non-zero under a zero mask" in tfprune.format_report(leaked)


def test_sparsity_report_counts_a_channel_written_back_under_its_mask():
    pruned = tfprune.prune_channels(_two_dense_layers(), tfprune.ConstantSparsity(0.5, 0))
    tfprune.PruningController(pruned).prune_to(0.5, step=0)
    assert tfprune.sparsity_report(pruned)["total"]["nonzero_under_mask"] == 0

    wrapper = pruned.get_layer("prune_channels_hidden")
    pruned_unit = int(np.flatnonzero(wrapper.pruned("output"))[0])
    value = keras.ops.convert_to_numpy(wrapper.layer.kernel).copy()
    value[:, pruned_unit] = 1.0
    wrapper.layer.kernel.assign(value)
    with pytest.warns(UserWarning, match="8 pruned weight entries"):
        rows = {row["weight"]: row for row in tfprune.sparsity_report(pruned)["layers"]}
    assert rows["hidden/kernel"]["nonzero_under_mask"] == 8  # the unit's whole kernel column
