"""Model kinds that prune_low_magnitude accepts, and the errors for what it rejects."""

import subprocess
import sys

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


def test_pruning_a_pruned_model_keeps_its_wrappers_and_a_pruned_layer_is_an_error():
    pruned = tfprune.prune_low_magnitude(mlp(), tfprune.ConstantSparsity(0.3, 0))
    again = tfprune.prune_low_magnitude(pruned, tfprune.ConstantSparsity(0.9, 0))
    assert [w.pruning_schedule.target_sparsity for w in again.layers] == [0.3, 0.3, 0.3]
    with pytest.raises(ValueError, match="already pruned"):
        tfprune.prune_low_magnitude(pruned.layers[0])


@pytest.mark.parametrize("thing", [42, "model.keras", np.zeros(3), None])
def test_non_keras_objects_are_rejected(thing):
    with pytest.raises(ValueError, match=f"can only prune an object .* You passed an object of type: {type(thing).__name__}"):
        tfprune.prune_low_magnitude(thing)


def test_bad_arguments_are_rejected_before_any_work():
    with pytest.raises(ValueError, match="scope"):
        tfprune.prune_low_magnitude(mlp(), scope="model")
    with pytest.raises(ValueError, match="N:M"):
        tfprune.prune_low_magnitude(mlp(), sparsity_m_by_n=(2, 4), scope="global")
    for m_by_n in [(5, 4), (4, 4)]:
        with pytest.raises(ValueError, match="must be smaller than n"):
            tfprune.prune_low_magnitude(mlp(), sparsity_m_by_n=m_by_n)


def _update_once(pruned):
    controller = tfprune.PruningController(pruned)
    controller.update(controller.wrappers[0].pruning_schedule.begin_step or 1)


def test_m_by_n_zeroes_m_of_every_n_as_in_tfmot():
    model = keras.Sequential([keras.Input((8,)), L.Dense(8), L.Dense(4)])
    for (m, n), zeros in [((2, 4), 2), ((1, 4), 1), ((3, 4), 3)]:
        pruned = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(m / n, 0, frequency=1),
                                             sparsity_m_by_n=(m, n))
        _update_once(pruned)
        for layer in pruned.layers:
            kernel = layer.layer.kernel.numpy()
            assert np.all((kernel.reshape(-1, n, kernel.shape[1]) == 0).sum(axis=1) == zeros)


def test_m_by_n_pads_an_input_axis_that_is_not_a_multiple_of_n_as_tfmot_does():
    model = keras.Sequential([keras.Input((6,)), L.Dense(4, name="odd")])
    pruned = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(0.5, 0, frequency=1), sparsity_m_by_n=(2, 4))
    _update_once(pruned)
    zeros = pruned.layers[0].layer.kernel.numpy() == 0
    assert np.all(zeros[:4].sum(axis=0) == 2) and not zeros[4:].any()  # the short group of 2 keeps both


def test_m_by_n_warns_when_the_schedule_asks_for_another_sparsity():
    with pytest.warns(UserWarning, match=r"zeroes 1 of every 4 weights \(25%\) once.*not used") as caught:
        tfprune.prune_low_magnitude(mlp(), tfprune.ConstantSparsity(0.8, 0), sparsity_m_by_n=(1, 4))
    assert len([w for w in caught if "sparsity_m_by_n" in str(w.message)]) == 1  # once for the model, not per layer


@pytest.mark.parametrize("layer, input_axis", [(L.Conv2DTranspose(6, 3, name="t"), 3), (L.Conv2D(6, 3, name="t"), 2)])
def test_m_by_n_and_blocks_run_along_the_true_input_axis(layer, input_axis):
    model = keras.Sequential([keras.Input((5, 5, 8)), layer])
    pruned = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(0.5, 0, frequency=1), sparsity_m_by_n=(2, 4))
    _update_once(pruned)
    kernel = np.moveaxis(pruned.layers[0].layer.kernel.numpy(), input_axis, -1)  # (..., in=8)
    assert np.all((kernel.reshape(*kernel.shape[:-1], 2, 4) == 0).sum(axis=-1) == 2)
    blocked = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(0.5, 0, frequency=1), block_size=(4, 1))
    _update_once(blocked)
    kernel = np.moveaxis(blocked.layers[0].layer.kernel.numpy(), input_axis, -1)
    groups = kernel.reshape(*kernel.shape[:-1], 2, 4) == 0
    assert np.all(groups.all(axis=-1) == groups.any(axis=-1))  # each block of 4 inputs is all zero or all kept


def test_partial_edge_blocks_are_pruned_whole():
    model = keras.Sequential([keras.Input((8,)), L.Dense(5, name="five")])
    pruned = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(0.5, 0, frequency=1), block_size=(1, 2))
    _update_once(pruned)
    zeros = pruned.layers[0].layer.kernel.numpy() == 0
    assert np.all(zeros[:, 0] == zeros[:, 1]) and np.all(zeros[:, 2] == zeros[:, 3])
    assert round(zeros[:, :4].sum() / 2 + zeros[:, 4].sum()) == round(0.5 * 8 * 3)  # 12 of 24 blocks


def test_block_sparsity_on_a_one_dimensional_weight_is_rejected():
    class Scale(L.Layer, tfprune.PrunableLayer):
        def build(self, input_shape):
            self.scale = self.add_weight(shape=(input_shape[-1],), name="scale")

        def call(self, x):
            return x * self.scale

        def get_prunable_weights(self):
            return [self.scale]

    model = keras.Sequential([keras.Input((8,)), Scale(name="sc")])
    with pytest.raises(ValueError, match="'sc/scale'.*1-D"):
        tfprune.prune_low_magnitude(model, block_size=(1, 2))


def test_strip_pruning_rejects_non_models():
    with pytest.raises(ValueError, match="strip_pruning expects"):
        tfprune.strip_pruning("model")


def _model_with_a_small_faint_layer():
    """A big layer and a small one whose weights are all smaller: global ranking would empty the small one."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), L.Dense(64, name="big"), L.Dense(4, name="faint")])
    model.get_layer("faint").kernel.assign(model.get_layer("faint").kernel * 1e-3)
    return model


def test_global_scope_holds_each_weight_at_max_layer_sparsity_and_the_report_says_so():
    model = _model_with_a_small_faint_layer()
    rows = {}
    for cap in (None, 0.5, 1.0):
        pruned = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(0.5, 0), scope="global",
                                             max_layer_sparsity=cap)
        tfprune.PruningController(pruned).update(0)
        report = tfprune.sparsity_report(pruned)
        assert report["total"]["sparsity"] == pytest.approx(0.5, abs=1e-3)  # the budget moves, the total holds
        rows[cap] = {row["layer"]: row for row in report["layers"]}
    assert rows[None]["faint"]["nonzeros"] == 256 - int(0.99 * 256) and rows[None]["faint"]["at_cap"]  # default 0.99
    assert rows[0.5]["faint"]["sparsity"] == 0.5 and rows[0.5]["faint"]["at_cap"]
    assert rows[0.5]["big"]["sparsity"] == pytest.approx(0.5, abs=1e-3) and rows[0.5]["big"]["at_cap"]
    assert rows[1.0]["faint"]["nonzeros"] == 1 and not rows[1.0]["big"]["at_cap"]  # only the keep-one floor
    assert "* 1 weight(s) held at max_layer_sparsity" in tfprune.format_report(
        {"layers": list(rows[None].values()), "total": {"params": 1, "nonzeros": 1, "sparsity": 0.0}})


def test_max_layer_sparsity_is_checked():
    with pytest.raises(ValueError, match="needs scope='global'"):
        tfprune.prune_low_magnitude(mlp(), max_layer_sparsity=0.9)
    with pytest.raises(ValueError, match="exceeds max_layer_sparsity=0.8.*raise max_layer_sparsity"):
        tfprune.prune_low_magnitude(mlp(), tfprune.ConstantSparsity(0.9, 0), scope="global", max_layer_sparsity=0.8)
    with pytest.raises(ValueError, match=r"must be in \(0, 1\]"):
        tfprune.prune_low_magnitude(mlp(), scope="global", max_layer_sparsity=1.5)


def test_import_tfprune_loads_nothing_beyond_keras_and_its_backend():
    code = (
        "import sys, keras; before = set(sys.modules); import tfprune; "
        "print(sorted({m.split('.')[0] for m in set(sys.modules) - before}), 'tfprune.deploy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "['tfprune'] False"  # TensorBoard, LiteRT, the converter: on first use


def test_global_scope_on_a_small_mobilenet_v2_keeps_every_depthwise_kernel_alive():
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10)
    kept = {}
    for cap in (1.0, None):
        pruned = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(0.9, 0), scope="global",
                                             max_layer_sparsity=cap)
        tfprune.PruningController(pruned).update(0)
        report = tfprune.sparsity_report(pruned)
        assert report["total"]["sparsity"] == pytest.approx(0.9, abs=1e-5)
        kept[cap] = {row["weight"]: row for row in report["layers"]}
    cut_off = [name for name, row in kept[1.0].items() if row["nonzeros"] == 1]
    assert len(cut_off) >= 10 and any("depthwise" in name for name in cut_off)  # what the floor is for
    assert all(row["nonzeros"] >= 0.01 * row["params"] - 1 for row in kept[None].values())
    assert all(kept[None][name]["at_cap"] for name in cut_off)
