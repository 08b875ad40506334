import math
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfprune
from tests.tfmot_compat.custom_schedules import StepIndependentConstantSparsity, TfmotPolynomialDecay
from tfprune import ConstantSparsity, PolynomialDecay
from tfprune import schedules


def test_constant_sparsity_updates_every_frequency_steps_within_range():
    s = ConstantSparsity(0.5, begin_step=10, end_step=50, frequency=20)
    assert s(9) == (False, 0.5)
    assert s(10) == (True, 0.5)
    assert s(20) == (False, 0.5)
    assert s(30) == (True, 0.5)
    assert s(50) == (True, 0.5)
    assert s(51) == (False, 0.5)


def test_constant_sparsity_without_end_keeps_updating():
    s = ConstantSparsity(0.3, begin_step=0, frequency=100)
    assert s(10_000) == (True, 0.3)


def test_polynomial_decay_matches_zhu_gupta_at_boundaries_and_midpoint():
    s = PolynomialDecay(0.1, 0.9, begin_step=100, end_step=300, power=3, frequency=50)
    assert s(0) == (False, pytest.approx(0.1))
    assert s(100) == (True, pytest.approx(0.1))
    # halfway: 0.9 + (0.1 - 0.9) * 0.5**3 = 0.8
    assert s(200) == (True, pytest.approx(0.8))
    assert s(250)[1] == pytest.approx(0.9 - 0.8 * 0.25**3)
    assert s(300) == (True, pytest.approx(0.9))
    assert s(1000) == (False, pytest.approx(0.9))


def test_updates_happen_only_on_the_frequency_grid_as_in_tfmot():
    s = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=95, frequency=10)
    assert s(90)[0] and s(95) == (False, pytest.approx(0.8))  # end_step off the grid: no update there
    assert s.updates_until(95) == list(range(10, 91, 10))  # the first batch is step 1: no update at step 0


def test_tfmot_recipe_reaches_final_sparsity_on_the_last_batch():
    # PolynomialDecay(0, 0.8, 0, 10, frequency=5) over exactly 10 batches ends at 0.8 in tfmot.
    s = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=10, frequency=5)
    assert s.updates_until(10) == [5, 10] and s.sparsity_at(10) == pytest.approx(0.8)


def test_numpy_steps_give_python_values():
    s = PolynomialDecay(0.2, 0.8, begin_step=np.int64(100), end_step=np.int32(110), power=3, frequency=2)
    assert s(np.int64(102)) == (True, pytest.approx(0.4928))
    assert type(s(np.int64(102))[0]) is bool and isinstance(s.end_step, int)


@pytest.mark.parametrize("step", [tf.Variable(105), keras.Variable(105, dtype="int64"), tf.constant(105)])
def test_tensor_and_variable_steps_give_tensors_as_in_tfmot(step):
    should_update, sparsity = PolynomialDecay(0.2, 0.8, 100, 110, 3, 2)(step)
    assert keras.ops.is_tensor(should_update) and keras.ops.is_tensor(sparsity)
    assert not bool(should_update) and float(sparsity) == pytest.approx(0.725)


@pytest.mark.tensorflow_only("schedules traced by tf.function, as tfmot's graph-mode code calls them")
@pytest.mark.parametrize("schedule", [ConstantSparsity(0.5, 10, 50, 20), PolynomialDecay(0.1, 0.9, 20, 60, 3, 5)])
def test_schedules_run_traced_and_agree_with_python_steps_at_every_step(schedule):
    traced = tf.function(lambda step: schedule(step), autograph=False)
    should_update, sparsity = traced(tf.range(0, 70))  # symbolic inside the trace
    assert sparsity.dtype == tf.float32
    python = [schedule(step) for step in range(70)]
    assert should_update.numpy().tolist() == [u for u, _ in python]
    np.testing.assert_allclose(np.broadcast_to(sparsity.numpy(), (70,)), [s for _, s in python], atol=1e-6)


@pytest.mark.parametrize("step", [5.0, "5", None, tf.constant(5.0)])
def test_non_integer_steps_are_rejected(step):
    with pytest.raises(ValueError, match="integer step"):
        ConstantSparsity(0.5)(step)


def test_decreasing_polynomial_decay_warns():
    with pytest.warns(UserWarning, match="lowers the sparsity"):
        PolynomialDecay(0.9, 0.5, begin_step=0, end_step=10)


def test_config_is_tfmots_format_and_keras_reads_it_back():
    s = PolynomialDecay(0.2, 0.6, 10, 20, 5, 10)
    config = s.get_config()
    assert config["class_name"] == "PolynomialDecay" and config["config"]["power"] == 5
    assert keras.saving.deserialize_keras_object(config) == s
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(s)) == s
    assert PolynomialDecay.from_config(config["config"]) == s


def test_from_epochs_converts_to_steps():
    s = PolynomialDecay.from_epochs(0.0, 0.8, steps_per_epoch=30, begin_epoch=1, end_epoch=4, frequency=10)
    assert (s.begin_step, s.end_step, s.frequency) == (30, 120, 10)
    c = ConstantSparsity.from_epochs(0.5, steps_per_epoch=10, begin_epoch=2)
    assert (c.begin_step, c.end_step) == (20, -1)


@pytest.mark.parametrize("schedule", [ConstantSparsity(0.7, 5, 50, 5), PolynomialDecay(0.2, 0.6, 3, 33, 2, 7)])
def test_schedules_round_trip_through_config_and_keras_serialization(schedule):
    again = type(schedule).from_config(schedule.get_config())
    assert again.get_config() == schedule.get_config()
    restored = schedules.deserialize(schedules.serialize(schedule))
    assert type(restored) is type(schedule) and restored.get_config() == schedule.get_config()
    assert [restored(t) for t in range(60)] == [schedule(t) for t in range(60)]


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, math.nan, "0.5", None])
def test_invalid_sparsity_is_rejected_with_the_valid_range(bad):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        ConstantSparsity(bad)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        PolynomialDecay(0.0, bad, 0, 10)


def test_begin_after_end_is_rejected():
    with pytest.raises(ValueError, match="begin_step.*end_step"):
        PolynomialDecay(0.0, 0.5, begin_step=100, end_step=10)


@pytest.mark.parametrize("frequency", [0, -5])
def test_non_positive_frequency_is_rejected(frequency):
    with pytest.raises(ValueError, match="frequency"):
        ConstantSparsity(0.5, frequency=frequency)


@pytest.mark.parametrize("power", [0, -1, math.nan])
def test_non_positive_power_is_rejected(power):
    with pytest.raises(ValueError, match="power"):
        PolynomialDecay(0.0, 0.5, 0, 10, power=power)


def test_polynomial_decay_needs_an_end_step():
    with pytest.raises(ValueError, match="end_step"):
        PolynomialDecay(0.0, 0.5, 0, -1)


def test_from_epochs_rejects_bad_steps_per_epoch():
    with pytest.raises(ValueError, match="steps_per_epoch"):
        PolynomialDecay.from_epochs(0.0, 0.5, steps_per_epoch=0, end_epoch=3)


# Schedules written for tfmot: no base constructor, only __call__ returning tensors, and get_config.


def test_a_tfmot_schedule_answers_what_tfprune_asks():
    copy, native = TfmotPolynomialDecay(0.2, 0.8, 100, 110, 3, 2), PolynomialDecay(0.2, 0.8, 100, 110, 3, 2)
    assert copy.decision(102) == (True, pytest.approx(0.4928))
    assert copy.sparsity_at(105) == pytest.approx(0.725)
    assert copy.updates_until(115) == native.updates_until(115) == [100, 102, 104, 106, 108, 110]
    assert copy.final_sparsity == 0.8  # its own attribute
    constant = StepIndependentConstantSparsity(0.3)
    assert constant.updates_until(4) == [1, 2, 3, 4]
    assert constant.final_sparsity == pytest.approx(0.3)  # derived: its sparsity in the long run
    assert constant == StepIndependentConstantSparsity(0.3) != StepIndependentConstantSparsity(0.4)
    assert repr(constant) == "StepIndependentConstantSparsity(target_sparsity=0.3)"


class ScalarStepsOnly(schedules.PruningSchedule):
    """Decides with a Python `if`, so it cannot take a vector of steps."""

    def __call__(self, step):
        return bool(step % 10 == 0 and step <= 50), tf.constant(0.5)

    def get_config(self):
        return {}


def test_updates_of_a_schedule_taking_scalar_steps_only_are_found_step_by_step():
    assert ScalarStepsOnly().updates_until(70) == [10, 20, 30, 40, 50]


def test_a_schedule_without_sparsity_at_or_call_names_both():
    class Incomplete(schedules.PruningSchedule):
        def get_config(self):
            return {}

    with pytest.raises(NotImplementedError, match=r"Incomplete must implement sparsity_at\(step\) or.*__call__"):
        Incomplete(0, -1, 1).sparsity_at(3)


def _fit_16_steps(schedule, callbacks=()):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16), keras.layers.Dense(4)])
    pruned = tfprune.prune_low_magnitude(model, schedule)
    pruned.compile("sgd", "mse")
    x, y = np.random.rand(64, 8), np.random.rand(64, 4)
    pruned.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[tfprune.UpdatePruningStep(), *callbacks])
    return tfprune.sparsity_report(pruned)["layers"]


@pytest.mark.tensorflow_only("a schedule written the tfmot way, with tf ops")
def test_a_tfmot_schedule_prunes_in_fit_and_rewinding_sees_its_updates():
    rewinding = tfprune.LearningRateRewinding(0, schedule=lambda step: 0.01, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no shortfall warning: the schedule ends at step 16
        layers = _fit_16_steps(TfmotPolynomialDecay(0.0, 0.75, 0, 16, frequency=4), [rewinding])
    assert [row["sparsity"] for row in layers] == [pytest.approx(0.75)] * 2
    assert int(rewinding.rewound.offset.numpy()) == 16  # replayed from step 0 after the last update, at 16


def test_a_tfmot_schedule_that_ends_after_fit_gets_the_shortfall_warning():
    with pytest.warns(UserWarning, match=r"TfmotPolynomialDecay\(.*reaches sparsity 0\.7.* instead of 0\.8"):
        layers = _fit_16_steps(TfmotPolynomialDecay(0.0, 0.8, 0, 32, frequency=4))
    assert layers[0]["sparsity"] == pytest.approx(0.7, abs=0.01)  # 0.8 - 0.8 / 8 at step 16


def test_a_step_independent_tfmot_schedule_prunes_in_fit():
    assert [row["sparsity"] for row in _fit_16_steps(StepIndependentConstantSparsity(0.5))] == [0.5, 0.5]
