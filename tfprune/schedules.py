"""Pruning schedules: training step -> (update the masks now?, target sparsity).

Schedules are pure Python objects: they hold no state, can be called any number
of times, and serialize with `get_config` / `from_config` so that a model saved
mid-pruning resumes on the same schedule.
"""

import math
import warnings

import keras
import numpy as np

from tfprune.validation import is_integer


def _check_sparsity(name, value):
    if not isinstance(value, (int, float, np.number)) or math.isnan(value) or not 0.0 <= value < 1.0:
        raise ValueError(
            f"`{name}` must be a number in [0, 1), got {value!r}. "
            "Sparsity is the fraction of weights set to zero: 0.8 keeps 20% of them."
        )


def _check_steps(begin_step, end_step, frequency):
    for name, value in (("begin_step", begin_step), ("end_step", end_step), ("frequency", frequency)):
        if not is_integer(value):
            raise ValueError(f"`{name}` must be an integer number of training steps, got {value!r}.")
    if end_step < -1:
        raise ValueError(f"`end_step` must be -1 (prune until training ends) or a step >= 0, got {end_step}.")
    if begin_step < 0:
        raise ValueError(f"`begin_step` must be >= 0, got {begin_step}.")
    if end_step != -1 and end_step < begin_step:
        raise ValueError(
            f"`begin_step` ({begin_step}) must not be after `end_step` ({end_step}); "
            "use end_step=-1 to keep pruning until training ends."
        )
    if frequency <= 0:
        raise ValueError(f"`frequency` must be a positive number of steps, got {frequency}.")


class PruningSchedule:
    """Base class: decides when masks are updated and to which sparsity.

    Subclasses implement `sparsity_at(step)`, `final_sparsity` and `get_config()`.
    Calling a schedule with a step returns `(should_update, sparsity)`. As in tfmot,
    masks update at the steps of `[begin_step, end_step]` that are `frequency` steps
    apart from `begin_step`, and the first training batch is step 1: with
    `end_step = steps_per_epoch * epochs` the final update happens on the last batch
    when `end_step - begin_step` is a multiple of `frequency`.
    """

    def __init__(self, begin_step, end_step, frequency):
        _check_steps(begin_step, end_step, frequency)
        self.begin_step = int(begin_step)
        self.end_step = int(end_step)
        self.frequency = int(frequency)

    def __call__(self, step):
        step = _as_step(step)
        return self._should_update(step), self.sparsity_at(step)

    def _should_update(self, step):
        in_range = step >= self.begin_step and (self.end_step == -1 or step <= self.end_step)
        return in_range and (step - self.begin_step) % self.frequency == 0

    def sparsity_at(self, step):
        """The target sparsity at `step` (whether or not masks update then)."""
        raise NotImplementedError(f"{type(self).__name__} must implement sparsity_at(step).")

    def get_config(self):
        """`{"class_name", "config": constructor arguments, ...}`, the format of tfmot that
        `keras.saving.deserialize_keras_object` reads back without custom objects."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_config(); see ConstantSparsity.")

    def _config(self, **arguments):
        return {
            "module": type(self).__module__,
            "class_name": type(self).__name__,
            "config": arguments,
            "registered_name": keras.saving.get_registered_name(type(self)),
        }

    def _arguments(self):
        config = self.get_config()
        return config.get("config", config)

    def updates_until(self, last_step):
        """The steps in `1..last_step` at which masks update (the first batch is step 1).

        Example:

        >>> PolynomialDecay(0.0, 0.8, begin_step=0, end_step=10, frequency=5).updates_until(10)
        [5, 10]
        """
        first = self.begin_step if self.begin_step >= 1 else self.frequency
        last = last_step if self.end_step == -1 else min(last_step, self.end_step)
        return list(range(first, last + 1, self.frequency))

    def __eq__(self, other):
        return type(self) is type(other) and self._arguments() == other._arguments()

    def __hash__(self):
        return hash((type(self).__name__, tuple(sorted(self._arguments().items()))))

    @classmethod
    def from_epochs(cls, *args, steps_per_epoch, begin_epoch=0, end_epoch=None, **kwargs):
        """Builds the schedule with begin/end given in epochs instead of steps.

        Example:

        >>> s = PolynomialDecay.from_epochs(0.0, 0.8, steps_per_epoch=30,
        ...                                 begin_epoch=1, end_epoch=4, frequency=10)
        >>> (s.begin_step, s.end_step)
        (30, 120)
        """
        if not is_integer(steps_per_epoch) or steps_per_epoch <= 0:
            raise ValueError(
                f"`steps_per_epoch` must be a positive integer, got {steps_per_epoch!r}; "
                "it is usually ceil(num_samples / batch_size)."
            )
        end_step = -1 if end_epoch is None else end_epoch * steps_per_epoch
        return cls(*args, begin_step=begin_epoch * steps_per_epoch, end_step=end_step, **kwargs)

    @classmethod
    def from_config(cls, config):
        """Reads both tfmot's `{"class_name", "config"}` format and plain constructor arguments."""
        return cls(**config.get("config", config))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._arguments().items())
        return f"{type(self).__name__}({args})"


@keras.saving.register_keras_serializable(package="tfprune")
class ConstantSparsity(PruningSchedule):
    """Prunes to one fixed sparsity, every `frequency` steps from `begin_step`.

    Example:

    >>> ConstantSparsity(0.5, begin_step=0, frequency=100)(200)
    (True, 0.5)
    """

    def __init__(self, target_sparsity, begin_step=0, end_step=-1, frequency=100):
        _check_sparsity("target_sparsity", target_sparsity)
        super().__init__(begin_step, end_step, frequency)
        self.target_sparsity = float(target_sparsity)

    def sparsity_at(self, step):
        return self.target_sparsity

    @property
    def final_sparsity(self):
        return self.target_sparsity

    def get_config(self):
        return self._config(
            target_sparsity=self.target_sparsity,
            begin_step=self.begin_step,
            end_step=self.end_step,
            frequency=self.frequency,
        )


@keras.saving.register_keras_serializable(package="tfprune")
class PolynomialDecay(PruningSchedule):
    """Gradual pruning of Zhu & Gupta (2017), "To prune, or not to prune".

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (t_end - t0)) ** power,
    clipped to [s_i, s_f] outside [t0, t_end], with masks updated every
    `frequency` steps between `begin_step` and `end_step`.

    Example:

    >>> s = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=100, frequency=10)
    >>> s(0), s(50), s(100)
    ((True, 0.0), (True, 0.7), (True, 0.8))
    """

    def __init__(self, initial_sparsity, final_sparsity, begin_step, end_step, power=3, frequency=100):
        _check_sparsity("initial_sparsity", initial_sparsity)
        _check_sparsity("final_sparsity", final_sparsity)
        super().__init__(begin_step, end_step, frequency)
        if end_step == -1:
            raise ValueError("PolynomialDecay needs a finite `end_step` (the step where sparsity reaches its final value).")
        if not isinstance(power, (int, float)) or math.isnan(power) or power <= 0:
            raise ValueError(f"`power` must be a positive number, got {power!r}; Zhu & Gupta use 3.")
        if initial_sparsity > final_sparsity:
            warnings.warn(
                f"PolynomialDecay({initial_sparsity}, {final_sparsity}, ...) lowers the sparsity over time: masks "
                "reopen, but the weights pruned earlier restart from zero. Did you swap initial and final sparsity?",
                stacklevel=2,
            )
        self.initial_sparsity = float(initial_sparsity)
        self.final_sparsity = float(final_sparsity)
        self.power = power

    def sparsity_at(self, step):
        span = max(self.end_step - self.begin_step, 1)
        progress = min(1.0, max(0.0, (step - self.begin_step) / span))
        sparsity = self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * (1.0 - progress) ** self.power
        return round(sparsity, 12)

    def get_config(self):
        return self._config(
            initial_sparsity=self.initial_sparsity,
            final_sparsity=self.final_sparsity,
            begin_step=self.begin_step,
            end_step=self.end_step,
            power=self.power,
            frequency=self.frequency,
        )


def _as_step(step):
    """A Python int from an int, a NumPy integer or a scalar tensor (tfmot passes tf.Variables)."""
    if is_integer(step):
        return int(step)
    try:
        value = np.asarray(keras.ops.convert_to_numpy(step))
    except Exception as error:  # symbolic tensors, strings, ...
        raise ValueError(f"A pruning schedule needs a concrete integer step, got {step!r}.") from error
    if value.shape != () or not np.issubdtype(value.dtype, np.integer):
        raise ValueError(f"A pruning schedule needs a scalar integer step, got {step!r}.")
    return int(value)


def serialize(schedule):
    return schedule.get_config()


def deserialize(config):
    return keras.saving.deserialize_keras_object(config)
