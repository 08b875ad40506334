"""Group lasso over channel groups: the loss it adds, what it drives to zero, saving, bad input."""

import keras
import numpy as np
import pytest

import tfprune
from tests.conftest import compile_classifier
from tfprune import data

L = keras.layers


def tiny_mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), L.Dense(3, name="hidden"), L.Dense(2, name="out")])


def test_the_added_loss_is_sqrt_size_times_the_group_norm_warmed_up_from_zero():
    model = tfprune.prune_channels(tiny_mlp(), None, penalty=tfprune.GroupLasso(0.5, warmup_steps=10))
    controller = tfprune.PruningController(model)
    controller.set_step_driven(True)
    x = np.ones((2, 4), "float32")
    kernel, bias = model.get_layer("prune_channels_hidden").layer.get_weights()
    rows = model.get_layer("out").get_weights()[0]
    # group j: hidden kernel column j (4), hidden bias j (1), out kernel row j (2): 7 weights
    expected = 0.5 * sum(np.sqrt(7) * np.sqrt((kernel[:, j] ** 2).sum() + bias[j] ** 2 + (rows[j] ** 2).sum())
                         for j in range(3))

    controller.update(0)
    model(x, training=True)
    assert float(sum(model.losses)) == pytest.approx(0.0)
    controller.update(5)
    model(x, training=True)
    assert float(sum(model.losses)) == pytest.approx(expected / 2, rel=1e-5)
    controller.update(50)
    model(x, training=True)
    assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-5)


def test_group_lasso_drives_whole_groups_to_zero_then_they_are_pruned_and_shrunk(tmp_path):
    (x, y), (x_test, y_test) = data.load_digits()

    def cnn():
        keras.utils.set_random_seed(0)
        return keras.Sequential([
            keras.Input((8, 8, 1)), L.Conv2D(16, 3, padding="same", name="conv1"), L.BatchNormalization(), L.ReLU(),
            L.Conv2D(32, 3, name="conv2"), L.ReLU(), L.MaxPooling2D(), L.Flatten(),
            L.Dense(32, activation="relu", name="hidden"), L.Dense(10, name="out"),
        ])

    norms = {}
    for strength in (0.0, 3e-3):
        penalized = compile_classifier(tfprune.prune_channels(cnn(), None, penalty=tfprune.GroupLasso(
            strength, warmup_steps=40)))
        penalized.fit(x, y, epochs=12, batch_size=32, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
        norms[strength] = penalized
    baseline_pruned = tfprune.prune_groups_below(norms[0.0], threshold=0.05)
    penalized = norms[3e-3]
    path = tmp_path / "penalized.keras"
    penalized.save(path)
    reloaded = tfprune.load_model(path)
    assert reloaded.get_layer("prune_channels_conv1").penalty == tfprune.GroupLasso(3e-3, warmup_steps=40)

    pruned_count = tfprune.prune_groups_below(reloaded, threshold=0.05)
    small = tfprune.shrink(reloaded, verbose=False)

    assert baseline_pruned == 0 and pruned_count >= 20  # of 80 groups
    np.testing.assert_allclose(small.predict(x_test, verbose=0), reloaded.predict(x_test, verbose=0), atol=1e-4)
    assert np.mean(np.argmax(small.predict(x_test, verbose=0), -1) == y_test) > 0.85


@pytest.mark.parametrize("arguments, message", [
    ((-1e-3,), "strength must be a finite number >= 0"),
    ((float("nan"),), "strength must be a finite number >= 0"),
    ((1e-3, -5), "`warmup_steps` must be an integer >= 0"),
])
def test_bad_strengths_are_named(arguments, message):
    with pytest.raises(ValueError, match=message):
        tfprune.GroupLasso(*arguments)


def test_a_penalty_run_needs_something_to_do_and_a_valid_threshold():
    with pytest.raises(ValueError, match="needs a pruning_schedule, a penalty or a budget"):
        tfprune.prune_channels(tiny_mlp(), None)
    with pytest.raises(ValueError, match="`penalty` must be a tfprune.Penalty"):
        tfprune.prune_channels(tiny_mlp(), None, penalty="group_lasso")
    model = tfprune.prune_channels(tiny_mlp(), None, penalty=tfprune.GroupLasso(1e-3))
    with pytest.raises(ValueError, match="`threshold` must be a number >= 0"):
        tfprune.prune_groups_below(model, -1.0)


def _gated_mlp(activation="tanh"):
    """h1's gates sit on the BatchNorm after it; h2's on its weights (tanh) or on its outputs (relu)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), L.Dense(64, activation="relu", name="h1"),
                              L.BatchNormalization(name="bn"), L.Dense(32, activation=activation, name="h2"),
                              L.Dense(10, name="out")])
    return tfprune.prune_channels(model, None, penalty=tfprune.L0Gates(1e-2, warmup_steps=20, initial_drop_rate=0.5))


def test_l0_gates_sit_on_the_batch_norm_or_the_producer_and_add_the_expected_open_count():
    gated = _gated_mlp()
    assert {layer.layer.name: layer.gate_roles for layer in gated.layers if isinstance(layer, tfprune.PruneChannels)} \
        == {"h1": (), "bn": ("channel",), "h2": ("output",)}
    controller = tfprune.PruningController(gated)
    controller.set_step_driven(True)
    controller.update(1000)  # warmed up
    gated(np.zeros((2, 64), "float32"), training=True)
    penalty = tfprune.L0Gates(1e-2)
    # log alpha starts at 0: every gate is open with probability sigmoid(-beta * log(-gamma / zeta))
    open_probability = 1 / (1 + np.exp(penalty.beta * np.log(-penalty.gamma / penalty.zeta)))
    assert float(sum(gated.losses)) == pytest.approx(1e-2 * (64 + 32) * open_probability, rel=1e-5)


def test_l0_gates_close_in_fit_fold_exactly_and_shrink_away(tmp_path):
    (x, y), (x_test, y_test) = data.load_digits()
    x, x_test = x.reshape(-1, 64), x_test.reshape(-1, 64)
    gated = _gated_mlp()
    gated.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    gated.fit(x, y, epochs=25, batch_size=32, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    path = tmp_path / "gated.keras"
    gated.save(path)
    gated = tfprune.load_model(path)
    expected = gated.predict(x_test, verbose=0)  # inference: deterministic gates

    closed = tfprune.fold_gates(gated)

    np.testing.assert_allclose(gated.predict(x_test, verbose=0), expected, atol=1e-4)
    small = tfprune.shrink(gated, verbose=False)
    assert closed > 10
    assert small.get_layer("h1").units + small.get_layer("h2").units == 64 + 32 - closed
    np.testing.assert_allclose(small.predict(x_test, verbose=0), expected, atol=1e-4)
    assert np.mean(np.argmax(expected, -1) == y_test) > 0.85
    with pytest.raises(ValueError, match="no L0 gates to fold"):
        tfprune.fold_gates(gated)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_strip_pruning_folds_unfolded_gates_so_the_plain_model_computes_the_same(activation):
    gated = _gated_mlp(activation)
    for layer in gated.layers:
        for log_alpha in (layer.gates.log_alpha.values() if getattr(layer, "gates", None) else ()):
            log_alpha.assign(np.linspace(-4.0, 4.0, log_alpha.shape[0]))  # some gates closed, some half open
    x = np.random.default_rng(0).normal(size=(5, 64)).astype("float32")

    stripped = tfprune.strip_pruning(gated)

    np.testing.assert_allclose(stripped.predict(x, verbose=0), gated.predict(x, verbose=0), atol=1e-5)
    small = tfprune.shrink(stripped, verbose=False)
    assert small.get_layer("h1").units < 64 and small.get_layer("h2").units < 32
    np.testing.assert_allclose(small.predict(x, verbose=0), gated.predict(x, verbose=0), atol=1e-5)


def test_each_gated_layer_draws_its_own_gate_noise_reproducibly():
    def noise():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((8,)), L.Dense(16, activation="relu", name="a"),
                                  L.Dense(16, activation="relu", name="b"), L.Dense(2, name="out")])
        gated = tfprune.prune_channels(model, None, penalty=tfprune.L0Gates(1e-2))
        wrappers = [w for w in gated.layers if isinstance(w, tfprune.PruneChannels) and w.gate_roles]
        return [keras.ops.convert_to_numpy(w.penalty.gates(w.gates.log_alpha["output"], True, w.gates.seed))
                for w in wrappers]

    first, second = noise()
    assert not np.allclose(first, second)  # same width, same log alpha: only the noise can differ
    again = noise()
    np.testing.assert_array_equal(first, again[0])
