"""Users' own container layers and subclassed models (keras.io style): pruned inside, trained, saved, stripped."""

import subprocess
import sys
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

import tfprune
from tests.container_models import BlockNet, ResidualBlock, TransformerBlock, transformer_classifier
from tfprune.graph.containers import PrunedContainer

L = keras.layers
SCHEDULE = dict(pruning_schedule=tfprune.ConstantSparsity(0.5, 0, frequency=2))


def _fit(model, x, y, epochs=1):
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=epochs, batch_size=16, verbose=0, callbacks=[tfprune.UpdatePruningStep()])


def test_subclassed_model_with_container_layers_keeps_tracking_prunes_saves_and_strips(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = np.random.rand(64, 8).astype("float32"), np.random.randint(0, 3, 64)
    model = BlockNet()
    model(x[:1])
    model.compile("sgd", "mse")
    pruned = tfprune.prune_low_magnitude(model, **SCHEDULE)
    assert pruned.compiled and pruned.optimizer is not model.optimizer  # compiled like the original, as clone_model does

    assert len(pruned.trainable_weights) == len(model.trainable_weights) == 14
    assert len(tfprune.sparsity_report(pruned)["layers"]) == 4  # three blocks' Dense and the head
    assert isinstance(pruned.stack[1].dense, tfprune.PruneLowMagnitude)
    assert isinstance(model.stack[1].dense, L.Dense)  # the user's model is untouched
    np.testing.assert_allclose(pruned.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)

    _fit(pruned, x, y)  # 4 steps: the callback drives the wrappers inside the blocks
    assert tfprune.sparsity_report(pruned)["total"]["sparsity"] == pytest.approx(0.5, abs=0.01)

    path = tmp_path / "blocknet.keras"
    pruned.save(path)
    loaded = tfprune.load_model(path)
    assert isinstance(loaded, BlockNet) and isinstance(loaded.stack[0].dense, tfprune.PruneLowMagnitude)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), pruned.predict(x, verbose=0))
    assert tfprune.PruningController(loaded).step == tfprune.PruningController(pruned).step
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", pruned.predict(x, verbose=0))
    in_a_new_process = (  # where only the module defining BlockNet is imported, as in a user's serving job
        "import numpy as np, tfprune, tests.container_models; d = __import__('pathlib').Path(r'%s'); "
        "m = tfprune.load_model(d / 'blocknet.keras'); "
        "print(float(np.abs(m.predict(np.load(d / 'x.npy'), verbose=0) - np.load(d / 'expected.npy')).max()))"
    ) % tmp_path
    result = subprocess.run([sys.executable, "-c", in_a_new_process], capture_output=True, text=True,
                            cwd=Path(__file__).parent.parent)
    assert result.returncode == 0 and result.stdout.strip().splitlines()[-1] == "0.0", result.stderr[-2000:]

    stripped = tfprune.strip_pruning(pruned)
    assert type(stripped) is BlockNet and type(stripped.first) is ResidualBlock
    assert isinstance(stripped.stack[0].dense, L.Dense) and len(stripped.trainable_weights) == 14
    np.testing.assert_allclose(stripped.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-5)


def test_keras_io_transformer_in_a_functional_model_is_pruned_inside_and_round_trips(tmp_path):
    model = transformer_classifier()
    x, y = np.random.randint(0, 50, (64, 10)), np.random.randint(0, 2, 64)
    pruned = tfprune.prune_low_magnitude(model, **SCHEDULE)
    assert len(pruned.trainable_weights) == len(model.trainable_weights)
    block = pruned.get_layer(model.layers[2].name)
    assert isinstance(block, TransformerBlock) and isinstance(block, PrunedContainer)
    assert isinstance(block.att, tfprune.PruneLowMagnitude)
    assert isinstance(block.ffn.layers[0], tfprune.PruneLowMagnitude)  # a Sequential inside the block
    np.testing.assert_allclose(pruned.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)

    _fit(pruned, x, y)
    rows = tfprune.sparsity_report(pruned)["layers"]
    assert len(rows) == 9  # 2 embeddings, 4 attention kernels, 2 feed-forward kernels, the head
    assert all(row["sparsity"] == pytest.approx(0.5, abs=0.05) for row in rows)

    path = tmp_path / "transformer.keras"
    pruned.save(path)
    loaded = tfprune.load_model(path, safe_mode=False)  # the Lambda holds a Python lambda
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), pruned.predict(x, verbose=0))

    stripped = tfprune.strip_pruning(pruned)
    assert type(stripped.get_layer(block.name)) is TransformerBlock
    np.testing.assert_allclose(stripped.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-5)


def test_container_that_cannot_be_recreated_from_its_config_is_an_error_saying_what_to_add():
    class NoKwargsBlock(L.Layer):  # keras.io's older style: no **kwargs, no get_config
        def __init__(self):
            super().__init__()
            self.dense = L.Dense(4)

        def call(self, x):
            return self.dense(x)

    inputs = keras.Input((4,))
    model = keras.Model(inputs, NoKwargsBlock()(inputs))
    with pytest.raises(ValueError, match=r"(?s)Cannot copy layer .*NoKwargsBlock.*\*\*kwargs.*get_config"):
        tfprune.prune_low_magnitude(model)


def test_load_model_names_a_missing_custom_class_and_reads_legacy_h5(tmp_path):
    class Unregistered(L.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = L.Dense(4)

        def call(self, x):
            return self.dense(x)

    inputs = keras.Input((4,))
    pruned = tfprune.prune_low_magnitude(keras.Model(inputs, Unregistered()(inputs)))
    pruned.save(tmp_path / "custom.keras")
    with pytest.raises(ValueError, match=r"(?s)custom class 'Unregistered'.*register_keras_serializable.*custom_objects"):
        tfprune.load_model(tmp_path / "custom.keras")

    plain = keras.Sequential([keras.Input((4,)), L.Dense(2)])
    plain.save(tmp_path / "legacy.h5")
    assert h5py.is_hdf5(tmp_path / "legacy.h5")
    np.testing.assert_array_equal(tfprune.load_model(tmp_path / "legacy.h5").get_weights()[0], plain.get_weights()[0])
    (tmp_path / "legacy.keras").write_bytes((tmp_path / "legacy.h5").read_bytes())
    with pytest.raises(ValueError, match="HDF5.*give it a .h5 extension"):
        tfprune.load_model(tmp_path / "legacy.keras")


def test_an_uncopyable_weighted_layer_left_dense_says_what_to_add():
    class Scale(L.Layer):  # weighted, unknown to tfprune, and its __init__ takes no **kwargs
        def __init__(self, init):
            super().__init__()
            self.init = init

        def build(self, shape):
            self.v = self.add_weight(shape=(shape[-1],), initializer="ones")

        def call(self, x):
            return x * self.v

    inputs = keras.Input((4,))
    model = keras.Model(inputs, L.Dense(2)(Scale(2.0)(inputs)))
    with pytest.warns(UserWarning, match="'scale'.*stays dense"):
        with pytest.raises(ValueError, match=r"(?s)Cannot copy layer 'scale'.*\*\*kwargs"):
            tfprune.prune_low_magnitude(model, strict=False)
