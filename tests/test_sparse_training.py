"""Dynamic sparse training (SET, RigL): the sparsity holds, the weights move, grown ones start from nothing."""

import warnings

import keras
import numpy as np
import pytest

import tfprune
from tests.conftest import mlp
from tfprune.dynamic_sparsity import DynamicSparsity, rewired
from tfprune.graph import compat


def _masks(model):
    return [keras.ops.convert_to_numpy(m).astype(bool) for w in tfprune.PruningController(model).wrappers
            for m in w.masks]


def _compiled(model, learning_rate=0.05):
    model.compile(keras.optimizers.SGD(learning_rate, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_rewired_drops_the_smallest_active_weights_and_grows_the_highest_scored_inactive_ones():
    rng = np.random.default_rng(0)
    weight, mask, scores = rng.normal(size=(20, 10)), rng.random((20, 10)) < 0.3, rng.random((20, 10))
    weight[~mask] = 0
    after_drop, new = rewired(weight, mask, 0.25, scores)
    count = round(0.25 * mask.sum())
    dropped, grown = mask & ~after_drop, new & ~after_drop
    assert dropped.sum() == grown.sum() == count and new.sum() == mask.sum()
    assert np.abs(weight[dropped]).max() <= np.abs(weight[after_drop]).min()
    assert scores[grown].min() >= scores[~new].max()  # just-dropped entries compete too
    np.testing.assert_array_equal(rewired(weight, mask, 1e-4, scores)[1], mask)  # rounds to no move


def test_the_schedule_holds_its_sparsity_and_decays_the_drop_fraction_as_rigl():
    schedule = DynamicSparsity(0.9, end_step=1000, update_every=100, drop_fraction=0.3)
    assert schedule.updates_until(1200) == list(range(100, 1001, 100))
    assert schedule.drop_fraction_at(0) == pytest.approx(0.3) and schedule.drop_fraction_at(1000) == pytest.approx(0)
    assert schedule.drop_fraction_at(500) == pytest.approx(0.15)
    assert DynamicSparsity(0.9, 1000, drop_schedule="constant").drop_fraction_at(900) == 0.3
    assert keras.saving.deserialize_keras_object(schedule.get_config()) == schedule
    assert schedule.shortfall(["dense"], 10) is None  # at the sparsity from the first step


class MaskLog(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.kept = []

    def on_train_batch_end(self, batch, logs=None):
        self.kept.append([int(m.sum()) for m in _masks(self.model)])


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_weights_move_at_constant_sparsity_through_fit(method, digits):
    (x, y), _ = digits
    sparse = tfprune.sparse_training(mlp(), 0.9, method=method, update_every=10, end_step=60)
    report = tfprune.sparsity_report(sparse)["total"]
    assert report["sparsity"] == pytest.approx(0.9, abs=0.002)
    erk = [1 - m.mean() for m in _masks(sparse)]
    assert erk[0] > 0.9 > erk[-1]  # ERK: the big first layer pruned more than the classifier
    before, log = _masks(sparse), MaskLog()
    _compiled(sparse).fit(x[:640], y[:640], batch_size=32, epochs=4, verbose=0,
                          callbacks=[tfprune.UpdatePruningStep(), log])
    assert all(kept == log.kept[0] for kept in log.kept) and log.kept[0] == [int(m.sum()) for m in before]
    after = _masks(sparse)
    moved = sum(int((b & ~a).sum()) for b, a in zip(before, after))
    assert moved > 0.1 * sum(int(b.sum()) for b in before)
    for w in tfprune.PruningController(sparse).wrappers:
        kernel = keras.ops.convert_to_numpy(w.layer.kernel)
        assert (kernel[~keras.ops.convert_to_numpy(w.masks[0]).astype(bool)] == 0).all()


def test_grown_weights_start_at_zero_with_their_momentum_reset(digits):
    (x, y), _ = digits
    sparse = _compiled(tfprune.sparse_training(mlp(), 0.8, update_every=5, end_step=5, drop_fraction=0.5))
    sparse.fit(x[:128], y[:128], batch_size=32, epochs=1, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    wrapper = sparse.layers[0]
    kernel = wrapper.layer.kernel
    (momentum,) = compat.optimizer_slots(sparse.optimizer, kernel)
    momentum.assign(np.ones(momentum.shape, "float32"))
    kernel.assign(keras.ops.convert_to_numpy(kernel) + 1.0)  # so that dropped weights re-grown would show
    before = keras.ops.convert_to_numpy(wrapper.masks[0]).astype(bool)
    controller = tfprune.PruningController(sparse)
    assert controller.finish_step(5)  # after the update step's batch, driven by hand as a custom loop does
    after = keras.ops.convert_to_numpy(wrapper.masks[0]).astype(bool)
    stayed = before & after
    values, slots = keras.ops.convert_to_numpy(kernel), keras.ops.convert_to_numpy(momentum)
    assert (values[after & ~stayed] == 0).all() and (slots[after & ~stayed] == 0).all()
    assert (slots[stayed] == 1).all() and (values[stayed] != 0).all()
    regrown = ~stayed & after & (keras.ops.convert_to_numpy(kernel) == 0)
    assert regrown.sum() == (after & ~stayed).sum()


def test_rigl_grows_where_the_loss_reads_and_set_does_not():
    """Labels from the first 4 of 32 inputs: RigL's gradients move a linear classifier's weights to those rows."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2048, 32)).astype("float32")
    y = np.argmax(x[:, :4] @ rng.normal(size=(4, 4)), axis=-1)
    share = {}
    for method in ("set", "rigl"):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(4)])
        sparse = _compiled(tfprune.sparse_training(model, 0.9, method=method, update_every=8, end_step=64))
        sparse.fit(x, y, batch_size=256, epochs=10, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
        (kernel,) = _masks(sparse)
        share[method] = kernel[:4].sum() / kernel.sum()
    assert share["set"] < 0.3 < 0.7 < share["rigl"]  # 4 rows of 32 hold 1/8 of the weights at random


def test_a_run_saved_and_resumed_moves_the_same_weights(tmp_path, digits):
    (x, y), _ = digits
    x, y = x[:320], y[:320]

    def start():
        return _compiled(tfprune.sparse_training(mlp(), 0.9, method="rigl", update_every=7, end_step=40))

    whole = start()
    first = _masks(whole)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # RigL warns when it skips an update
        whole.fit(x, y, batch_size=32, epochs=4, shuffle=False, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    assert any((a != b).any() for a, b in zip(first, _masks(whole)))
    halves = start()
    halves.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    halves.save(tmp_path / "half.keras")
    resumed = tfprune.load_model(tmp_path / "half.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resumed.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    for a, b in zip(_masks(whole), _masks(resumed)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("arguments, message", [
    (dict(sparsity=1.0, end_step=100), r"`sparsity` must be in \(0, 1\)"),
    (dict(sparsity=0.9), "Give end_step"),
    (dict(end_step=50, update_every=100), "`update_every`=100 is longer than the run's moving phase"),
    (dict(end_step=100, method="rigl2"), "`method` must be one of"),
    (dict(end_step=100, drop_fraction=0.0), r"`drop_fraction` must be in \(0, 1\]"),
    (dict(end_step=100, distribution="random"), "`distribution` must be one of"),
])
def test_bad_arguments_are_named(arguments, message):
    with pytest.raises(ValueError, match=message):
        tfprune.sparse_training(mlp(), **arguments)


def test_static_sparse_training_keeps_its_random_erk_masks(digits):
    (x, y), _ = digits
    sparse = _compiled(tfprune.sparse_training(mlp(), 0.9, method="static"))
    before = _masks(sparse)
    other_seed = _masks(tfprune.sparse_training(mlp(), 0.9, method="static", seed=1))
    assert [m.sum() for m in before] == [m.sum() for m in other_seed] and (before[0] != other_seed[0]).any()
    assert 1 - before[0].mean() > 0.9 > 1 - before[-1].mean()  # ERK
    sparse.fit(x[:320], y[:320], batch_size=32, epochs=2, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    for a, b in zip(before, _masks(sparse)):
        np.testing.assert_array_equal(a, b)


def test_named_layers_stay_dense_and_the_rest_carries_the_sparsity():
    model = mlp()
    sparse = tfprune.sparse_training(model, 0.9, method="static", distribution="uniform",
                                     dense_layers=[model.layers[0].name])
    assert not isinstance(sparse.layers[0], tfprune.PruneLowMagnitude)
    assert [round(1 - m.mean(), 3) for m in _masks(sparse)] == [0.9, 0.9]
    with pytest.raises(ValueError, match=r"dense_layers names \['conv1'\], which model"):
        tfprune.sparse_training(model, 0.9, method="static", dense_layers=["conv1"])


def test_a_model_with_nothing_to_prune_is_refused():
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dropout(0.1)])
    with pytest.raises(ValueError, match="no weight tfprune can prune"):
        tfprune.sparse_training(model, 0.5, end_step=100)


def test_rigl_needs_an_optimizer_and_trainable_weights(digits):
    (x, y), _ = digits
    sparse = tfprune.sparse_training(mlp(), 0.8, method="rigl", end_step=100)
    callback = tfprune.UpdatePruningStep()
    callback.set_model(sparse)
    with pytest.raises(ValueError, match=r"compile it with the optimizer you train with"):
        callback.on_train_begin()
    sparse.layers[0].trainable = False
    with pytest.raises(ValueError, match=rf"\['{sparse.layers[0].layer.kernel.path}'\] are frozen"):
        _compiled(sparse).fit(x[:64], y[:64], verbose=0, callbacks=[tfprune.UpdatePruningStep()])


@pytest.mark.tensorflow_only("a tf.GradientTape training loop")
def test_rigl_moves_weights_in_a_custom_training_loop(digits):
    import tensorflow as tf

    (x, y), _ = digits
    sparse = _compiled(tfprune.sparse_training(mlp(), 0.9, method="rigl", update_every=5, end_step=20))
    callback = tfprune.UpdatePruningStep()
    callback.set_model(sparse)
    callback.on_train_begin()
    before = _masks(sparse)
    for batch in range(20):
        callback.on_train_batch_begin()
        xb, yb = x[32 * batch:32 * batch + 32], y[32 * batch:32 * batch + 32]
        with tf.GradientTape() as tape:
            loss = sparse.loss(yb, sparse(xb, training=True))
        sparse.optimizer.apply(tape.gradient(loss, sparse.trainable_variables), sparse.trainable_variables)
        callback.on_train_batch_end(batch)
    callback.on_train_end()
    after = _masks(sparse)
    assert [a.sum() for a in after] == [b.sum() for b in before]
    assert sum(int((b & ~a).sum()) for b, a in zip(before, after)) > 0
    assert "apply" not in vars(sparse.optimizer)  # the tap is gone with the run


def test_rigl_reads_the_unscaled_gradients_under_loss_scaling_and_survives_an_interrupted_fit(digits):
    (x, y), _ = digits
    sparse = tfprune.sparse_training(mlp(), 0.9, method="rigl", update_every=4, end_step=40)
    sparse.compile(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.05)),
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    class Interrupt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # the tap stays on the optimizer: on_train_end never ran
        sparse.fit(x[:320], y[:320], batch_size=32, verbose=0, callbacks=[tfprune.UpdatePruningStep(), Interrupt()])
    before = _masks(sparse)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # RigL warns when an update finds no gradient of its own batch
        sparse.fit(x[:320], y[:320], batch_size=32, epochs=2, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    assert any((a != b).any() for a, b in zip(before, _masks(sparse)))
    assert "apply" not in vars(sparse.optimizer.inner_optimizer)


def test_a_sparse_trained_model_strips_to_the_same_predictions_and_zeros(digits):
    (x, y), _ = digits
    sparse = _compiled(tfprune.sparse_training(mlp(), 0.9, method="set", update_every=5, end_step=10))
    sparse.fit(x[:320], y[:320], batch_size=32, epochs=2, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    plain = tfprune.strip_pruning(sparse)
    np.testing.assert_allclose(plain.predict(x[:64], verbose=0), sparse.predict(x[:64], verbose=0), atol=1e-6)
    stripped, masked = (tfprune.sparsity_report(m)["total"]["sparsity"] for m in (plain, sparse))
    assert stripped == masked >= 0.9 - 0.002  # above 0.9 where grown weights read pixels that are always 0


def test_a_model_whose_layers_cannot_be_copied_trains_sparse_in_place():
    class Block(keras.layers.Layer):  # as keras.io examples write layers: no **kwargs, no get_config
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(16, activation="relu")

        def call(self, x):
            return self.dense(x)

    keras.utils.set_random_seed(0)
    inputs = keras.Input((64,))
    model = keras.Model(inputs, keras.layers.Dense(10)(Block()(inputs)))
    with pytest.raises(ValueError, match="pass copy=False"):
        tfprune.sparse_training(model, 0.8, end_step=10, update_every=5)
    sparse = tfprune.sparse_training(model, 0.8, end_step=10, update_every=5, copy=False)
    assert tfprune.sparsity_report(sparse)["total"]["sparsity"] == pytest.approx(0.8, abs=0.01)
