"""WeightRewinding and LearningRateRewinding inside a real model.fit."""

import keras
import numpy as np
import pytest
from tests.conftest import compile_classifier, mlp

import tfprune
from tfprune.rewinding import RewoundSchedule, WeightRewinding, WeightSnapshot, optimizer_slots, rewound_variables

BATCH = 64
STEPS_PER_EPOCH = 10  # 640 examples


@pytest.fixture(scope="module")
def xy(digits):
    (x, y), _ = digits
    return x[: BATCH * STEPS_PER_EPOCH], y[: BATCH * STEPS_PER_EPOCH]


def pruned_at(step, sparsity=0.5):
    """An MLP whose masks change once, at `step`."""
    model = tfprune.prune_low_magnitude(mlp(), tfprune.ConstantSparsity(sparsity, begin_step=step, end_step=step,
                                                                         frequency=1))
    return compile_classifier(model)


def fit(model, xy, epochs, *callbacks, **kwargs):
    x, y = xy
    return model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0,
                     callbacks=[tfprune.UpdatePruningStep(), *callbacks], **kwargs)


def values(model):
    return [v.numpy() for v in rewound_variables(model)]


def masks_of(model):
    return [m.numpy() for w in tfprune.apply.wrapper.pruning_wrappers(model) for m in w.masks]


def test_weights_rewind_to_the_start_after_pruning_and_keep_the_masks(xy):
    model = pruned_at(2 * STEPS_PER_EPOCH)  # masks change on the very last batch, so the rewind is the end state
    initial = values(model)
    fit(model, xy, 2, WeightRewinding(rewind_step=0, verbose=0))
    masks = masks_of(model)
    assert all(0.45 < 1 - m.mean() < 0.55 for m in masks)
    kernels = iter(masks)
    for variable, start, now in zip(rewound_variables(model), initial, values(model)):
        expected = start * next(kernels) if variable.path.endswith("kernel") else start
        np.testing.assert_array_equal(now, expected)


def test_reset_optimizer_is_a_fresh_one_at_the_rewind_point_and_keep_leaves_it(xy):
    reset, kept = pruned_at(STEPS_PER_EPOCH * 2), pruned_at(STEPS_PER_EPOCH * 2)
    fit(reset, xy, 2, WeightRewinding(rewind_epoch=1, verbose=0))
    fit(kept, xy, 2, WeightRewinding(rewind_epoch=1, optimizer_state="keep", verbose=0))
    assert all(not np.any(v.numpy()) for v in optimizer_slots(reset.optimizer))  # Adam starts from zero moments
    assert int(reset.optimizer.iterations.numpy()) == STEPS_PER_EPOCH  # back to the end of epoch 1
    assert all(np.any(v.numpy()) for v in optimizer_slots(kept.optimizer))
    assert int(kept.optimizer.iterations.numpy()) == 2 * STEPS_PER_EPOCH


def test_rewinding_to_an_epoch_restores_the_weights_of_that_epoch(xy):
    model = pruned_at(3 * STEPS_PER_EPOCH)
    after_epoch_one = {}
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: after_epoch_one.setdefault("v", values(model)) if epoch == 0 else None)
    rewinding = WeightRewinding(rewind_epoch=1, verbose=0)
    fit(model, xy, 3, record, rewinding)
    assert rewinding.snapshot.step == STEPS_PER_EPOCH
    for now, then, variable in zip(values(model), after_epoch_one["v"], rewound_variables(model)):
        constraint = variable.constraint or (lambda v: v)
        np.testing.assert_allclose(now, keras.ops.convert_to_numpy(constraint(then)), rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore:Training ends at step")  # the first half of a split run stays dense
def test_snapshot_in_a_file_survives_a_keras_checkpoint_and_resume(xy, tmp_path):
    snapshot_file = str(tmp_path / "rewind.npz")
    model = pruned_at(2 * STEPS_PER_EPOCH)
    initial = values(model)
    stale = WeightSnapshot.take(tfprune.prune_low_magnitude(mlp(seed=1)), step=0, iteration=0)  # another run's ...
    stale.save(snapshot_file)
    fit(model, xy, 1, WeightRewinding(rewind_step=0, path=snapshot_file, verbose=0))  # ... is replaced, not used
    model.save(tmp_path / "half.keras")
    resumed = tfprune.load_model(tmp_path / "half.keras")
    with pytest.raises(ValueError, match="past the rewind point"):
        fit(resumed, xy, 2, WeightRewinding(rewind_step=0, verbose=0), initial_epoch=1)
    with pytest.raises(ValueError, match="holds the weights of step 0, not of rewind_step=5"):
        fit(resumed, xy, 2, WeightRewinding(rewind_step=5, path=snapshot_file, verbose=0), initial_epoch=1)
    fit(resumed, xy, 2, WeightRewinding(rewind_step=0, path=snapshot_file, verbose=0), initial_epoch=1)
    # rewound by the resumed run, from the file
    np.testing.assert_array_equal(values(resumed)[0], initial[0] * masks_of(resumed)[0])


def test_snapshot_errors_name_the_problem(xy, tmp_path):
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="Cannot read the rewind snapshot"):
        WeightSnapshot.load(corrupt)
    other = compile_classifier(tfprune.prune_low_magnitude(mlp(hidden=(32,))))
    snapshot = WeightSnapshot.take(pruned_at(5), step=0, iteration=0)
    with pytest.raises(ValueError, match="taken of a different model"):
        snapshot.restore(other)


@pytest.mark.parametrize(
    "kwargs, message",
    [({}, "exactly one of"), ({"rewind_step": 0, "rewind_epoch": 1}, "exactly one of"),
     ({"rewind_step": -1}, "integer >= 0"), ({"rewind_step": 0, "optimizer_state": "zero"}, "optimizer_state")],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WeightRewinding(**kwargs)


def test_rewind_point_beyond_training_is_an_error(xy):
    with pytest.raises(ValueError, match="rewind_step=1000 is beyond this run"):
        fit(pruned_at(5), xy, 1, WeightRewinding(rewind_step=1000))
    with pytest.raises(ValueError, match="rewind_epoch=3 is beyond this run of 2 epochs"):
        fit(pruned_at(5), xy, 2, tfprune.LearningRateRewinding(rewind_epoch=3,
                                                                schedule=keras.optimizers.schedules.CosineDecay(1e-3, 20)))


def test_unpruned_model_and_optimizer_without_iterations_are_errors(xy):
    dense = compile_classifier(mlp())
    with pytest.raises(ValueError, match="no pruned layers"):
        dense.fit(*xy, epochs=1, verbose=0, callbacks=[WeightRewinding(rewind_step=0)])
    model = pruned_at(5)
    callback = WeightRewinding(rewind_step=0)
    callback.set_model(model)
    model.optimizer = object()
    with pytest.raises(ValueError, match="`iterations` counter"):
        callback.on_train_begin()


def decay():
    return keras.optimizers.schedules.ExponentialDecay(1e-2, decay_steps=5, decay_rate=0.5)


def test_learning_rate_replays_the_schedule_and_leaves_weights_and_counters(xy):
    model = pruned_at(15)
    model.compile(keras.optimizers.SGD(decay()), "sparse_categorical_crossentropy")
    fit(model, xy, 2, tfprune.LearningRateRewinding(rewind_step=5, verbose=0))
    optimizer = model.optimizer
    assert int(optimizer.iterations.numpy()) == 20  # not disturbed
    assert tfprune.apply.wrapper.saved_step(tfprune.apply.wrapper.pruning_wrappers(model)) == 20
    # rewound at step 15 to optimizer step 5: after 5 more steps the rate is the schedule's at step 10
    np.testing.assert_allclose(float(optimizer.learning_rate), float(decay()(10)), rtol=1e-6)
    assert isinstance(optimizer._learning_rate, RewoundSchedule)


def test_learning_rate_rewinding_of_a_float_rate_drives_the_given_schedule(xy):
    model = pruned_at(15)
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="learning rate is a constant"):
        fit(model, xy, 1, tfprune.LearningRateRewinding(rewind_step=0))
    fit(model, xy, 2, tfprune.LearningRateRewinding(rewind_step=0, schedule=decay(), verbose=0))
    np.testing.assert_allclose(float(model.optimizer.learning_rate), float(decay()(5)), rtol=1e-6)


@pytest.mark.filterwarnings("ignore:Training ends at step")
def test_learning_rate_rewind_point_resumes_from_a_keras_file(xy, tmp_path):
    model = pruned_at(15)
    model.compile(keras.optimizers.SGD(decay()), "sparse_categorical_crossentropy")
    fit(model, xy, 1, tfprune.LearningRateRewinding(rewind_step=5, verbose=0))
    model.save(tmp_path / "half.keras")
    resumed = tfprune.load_model(tmp_path / "half.keras")
    assert resumed.optimizer._learning_rate.rewind_iteration == 5
    fit(resumed, xy, 2, tfprune.LearningRateRewinding(rewind_step=5, verbose=0), initial_epoch=1)
    np.testing.assert_allclose(float(resumed.optimizer.learning_rate), float(decay()(10)), rtol=1e-6)
    other = pruned_at(5)
    other.compile(keras.optimizers.SGD(decay()), "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="already has a learning-rate schedule"):
        fit(other, xy, 1, tfprune.LearningRateRewinding(rewind_step=0, schedule=decay()))


def test_weight_rewinding_of_a_channel_pruned_model_keeps_the_pruned_channels_at_zero(xy):
    schedule = tfprune.ConstantSparsity(0.5, begin_step=2 * STEPS_PER_EPOCH, end_step=2 * STEPS_PER_EPOCH, frequency=1)
    model = compile_classifier(tfprune.prune_channels(mlp(), schedule))
    initial = values(model)
    fit(model, xy, 2, WeightRewinding(rewind_step=0, verbose=0))
    first_kernel = rewound_variables(model)[0]
    assert np.mean(np.all(first_kernel.numpy() == 0, axis=0)) == pytest.approx(0.5)  # half the units are gone
    for variable, start, now in zip(rewound_variables(model), initial, values(model)):
        expected = keras.ops.convert_to_numpy(variable.constraint(start)) if variable.constraint else start
        np.testing.assert_array_equal(now, expected)
