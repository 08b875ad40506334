"""copy=False: pruning a model's own layers in place, as tfmot does, for layers that cannot be re-created
from their config (keras.io's ViT as written)."""

import keras
import numpy as np
import pytest

import tfprune
from tests.container_models import BlockNet
from tests.keras_io_vit import create_vit_classifier
from tfprune.apply.wrapper import pruning_wrappers
from tfprune.apply.constraint import KeepPruned


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.random((32, 32, 32, 3)).astype("float32"), rng.integers(0, 10, 32)


def _constraints(model):
    return [v.constraint for v in model.weights if isinstance(v.constraint, KeepPruned)]


def test_the_vit_as_written_is_refused_with_both_fixes_named(images):
    model = create_vit_classifier(images[0])
    with pytest.raises(ValueError, match=r"PatchEncoder.*\*\*kwargs.*get_config.*copy=False"):
        tfprune.prune_low_magnitude(model)


def test_the_vit_as_written_is_pruned_in_place_trained_and_stripped(images):
    x, y = images
    keras.utils.set_random_seed(0)
    model = create_vit_classifier(x)
    before = model.predict(x[:4], verbose=0)
    pruned = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(0.5, 0, frequency=1), copy=False)
    np.testing.assert_array_equal(pruned.predict(x[:4], verbose=0), before)

    wrapped = {id(w.layer) for w in pruning_wrappers(pruned)}
    patch_encoder = next(layer for layer in model.layers if type(layer).__name__ == "PatchEncoder")
    assert id(patch_encoder.projection.layer) in wrapped  # swapped inside the user's own layer
    shared = {id(v) for v in model.weights} & {id(v) for v in pruned.weights}
    assert all(id(v) in shared for v in model.weights)  # every weight of the original is the pruned model's

    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    assert tfprune.sparsity_report(pruned)["total"]["sparsity"] == pytest.approx(0.5, abs=0.01)

    final = tfprune.strip_pruning(pruned, copy=False)
    assert not pruning_wrappers(final) and not _constraints(final)
    np.testing.assert_allclose(final.predict(x[:4], verbose=0), pruned.predict(x[:4], verbose=0), atol=1e-6)
    dense_kernels = [layer.kernel.numpy() for layer in final.layers if isinstance(layer, keras.layers.Dense)]
    assert all(np.mean(kernel == 0) == pytest.approx(0.5, abs=0.02) for kernel in dense_kernels)


def test_a_subclassed_model_pruned_in_place_is_the_same_object_with_wrappers_inside():
    model = BlockNet()
    model(np.zeros((1, 8), "float32"))
    kernel = model.head.kernel
    pruned = tfprune.prune_low_magnitude(model, copy=False)
    assert pruned is model
    assert pruned.head.layer.kernel is kernel and isinstance(kernel.constraint, KeepPruned)
    assert len(pruning_wrappers(pruned)) == 7  # 3 residual blocks x (dense, norm) + head
    stripped = tfprune.strip_pruning(pruned, copy=False)
    assert stripped is model and stripped.head.kernel is kernel and not pruning_wrappers(stripped)
    assert kernel.constraint is None


def test_the_vit_as_written_is_channel_pruned_in_place_and_shrunk(images):
    x, y = images
    keras.utils.set_random_seed(0)
    model = create_vit_classifier(x)
    patch_layers = [layer for layer in model.layers if type(layer).__name__ in ("Patches", "PatchEncoder")]
    with pytest.raises(ValueError, match="copy=False"):
        tfprune.prune_channels(model, tfprune.ConstantSparsity(0.5, 0), ignored_layers=patch_layers)
    pruned = tfprune.prune_channels(model, tfprune.ConstantSparsity(0.5, 0, frequency=1), copy=False,
                                    ignored_layers=patch_layers)
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    small = tfprune.shrink(pruned, copy=False, verbose=False)
    assert small.count_params() < 0.7 * model.count_params()
    np.testing.assert_allclose(small.predict(x[:4], verbose=0), pruned.predict(x[:4], verbose=0), atol=1e-5)
