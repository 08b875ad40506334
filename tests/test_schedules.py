import math

import keras
import numpy as np
import pytest

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


def test_numpy_and_tensor_steps_are_accepted():
    s = PolynomialDecay(0.2, 0.8, begin_step=np.int64(100), end_step=np.int32(110), power=3, frequency=2)
    assert s(np.int64(102)) == (True, pytest.approx(0.4928))
    assert s(keras.Variable(105, dtype="int64")) == (False, pytest.approx(0.725))
    assert isinstance(s.end_step, int)


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
