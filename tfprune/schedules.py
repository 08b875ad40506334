"""Pruning schedules: training step -> (update the masks now?, target sparsity).

Schedules are pure Python objects: they hold no state, can be called any number
of times, and serialize with `get_config` / `from_config` so that a model saved
mid-pruning resumes on the same schedule.
"""

import math

import keras


def _check_sparsity(name, value):
    if not isinstance(value, (int, float)) or math.isnan(value) or not 0.0 <= value < 1.0:
        raise ValueError(
            f"`{name}` must be a number in [0, 1), got {value!r}. "
            "Sparsity is the fraction of weights set to zero: 0.8 keeps 20% of them."
        )


def _check_steps(begin_step, end_step, frequency):
    for name, value in (("begin_step", begin_step), ("end_step", end_step), ("frequency", frequency)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"`{name}` must be an integer number of training steps, got {value!r}.")
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

    Subclasses implement `target_sparsity(step)` and `get_config()`.
    Calling a schedule with a step returns `(should_update, sparsity)`. Masks
    update every `frequency` steps from `begin_step`, and always at `end_step`
    so that the final sparsity is reached even when `end_step` is off the grid.
    """

    def __init__(self, begin_step, end_step, frequency):
        _check_steps(begin_step, end_step, frequency)
        self.begin_step = begin_step
        self.end_step = end_step
        self.frequency = frequency

    def __call__(self, step):
        in_range = step >= self.begin_step and (self.end_step == -1 or step <= self.end_step)
        on_grid = (step - self.begin_step) % self.frequency == 0 or step == self.end_step
        should_update = in_range and on_grid
        return should_update, self.target_sparsity(step)

    def target_sparsity(self, step):
        raise NotImplementedError

    @property
    def final_sparsity(self):
        """The sparsity this schedule ends at."""
        raise NotImplementedError

    @classmethod
    def from_epochs(cls, *args, steps_per_epoch, begin_epoch=0, end_epoch=None, **kwargs):
        """Builds the schedule with begin/end given in epochs instead of steps.

        Example:

        >>> s = PolynomialDecay.from_epochs(0.0, 0.8, steps_per_epoch=30,
        ...                                 begin_epoch=1, end_epoch=4, frequency=10)
        >>> (s.begin_step, s.end_step)
        (30, 120)
        """
        if not isinstance(steps_per_epoch, int) or steps_per_epoch <= 0:
            raise ValueError(
                f"`steps_per_epoch` must be a positive integer, got {steps_per_epoch!r}; "
                "it is usually ceil(num_samples / batch_size)."
            )
        end_step = -1 if end_epoch is None else end_epoch * steps_per_epoch
        return cls(*args, begin_step=begin_epoch * steps_per_epoch, end_step=end_step, **kwargs)

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
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
        self.sparsity = float(target_sparsity)

    def target_sparsity(self, step):
        return self.sparsity

    @property
    def final_sparsity(self):
        return self.sparsity

    def get_config(self):
        return {
            "target_sparsity": self.sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
        }


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
        self.initial_sparsity = float(initial_sparsity)
        self._final_sparsity = float(final_sparsity)
        self.power = power

    def target_sparsity(self, step):
        span = max(self.end_step - self.begin_step, 1)
        progress = min(1.0, max(0.0, (step - self.begin_step) / span))
        sparsity = self._final_sparsity + (self.initial_sparsity - self._final_sparsity) * (1.0 - progress) ** self.power
        return round(sparsity, 12)

    @property
    def final_sparsity(self):
        return self._final_sparsity

    def get_config(self):
        return {
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self._final_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "power": self.power,
            "frequency": self.frequency,
        }


def serialize(schedule):
    return keras.saving.serialize_keras_object(schedule)


def deserialize(config):
    return keras.saving.deserialize_keras_object(config)
