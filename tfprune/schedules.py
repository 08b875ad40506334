"""Pruning schedules: training step -> (update the masks now?, target sparsity).

Schedules hold no state, can be called any number of times, and serialize with
`get_config` / `from_config` so that a model saved mid-pruning resumes on the same schedule.

Called with a Python or NumPy integer step, a schedule answers with Python values; called
with a tensor or variable step, as tfmot's schedules are, it answers with tensors computed by
`keras.ops`, so it also runs inside traced code (`tf.function`, `jax.jit`) on every backend:

>>> ConstantSparsity(0.5, begin_step=0, frequency=100)(200)
(True, 0.5)
>>> should_update, sparsity = ConstantSparsity(0.5, begin_step=0, frequency=100)(keras.Variable(200))
>>> bool(should_update), float(sparsity)
(True, 0.5)

A schedule written for tfmot runs unchanged: it subclasses `PruningSchedule` without calling
its constructor, implements `__call__(step)` (returning tensors or Python values) and
`get_config()`, and may use tfmot's helpers `_should_prune_in_step`, `_validate_step` and
`_validate_sparsity`. What tfprune asks of a schedule beyond that (`sparsity_at`,
`updates_until`, `final_sparsity`, `decision`) is then derived by calling it.
"""

import functools
import math
import warnings

import keras
import numpy as np
from keras import ops

from tfprune.validation import check_sparsity, is_integer

# The step at which a schedule without an `end_step` gives its final sparsity (tfmot's steps are int64, TF's int32 safe).
LONG_RUN_STEP = 2**31 - 1


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


def _as_step(step):
    """A Python int for an integer step (the fast path), else an integer tensor (traced code, tfmot's variables)."""
    return int(step) if is_integer(step) else _integer_tensor(step)


def _integer_tensor(step):
    """A tensor, variable or array `step` as an integer tensor, or a ValueError saying what a step is."""
    message = f"A pruning schedule needs an integer step (a Python int or an integer tensor), got {step!r}."
    try:
        tensor = ops.convert_to_tensor(step)
    except (TypeError, ValueError) as error:
        raise ValueError(message) from error
    if "int" not in keras.backend.standardize_dtype(tensor.dtype):
        raise ValueError(message)
    return tensor


def _updates_at(step, begin_step, end_step, frequency):
    """Whether masks update at `step`: on the `frequency` grid from `begin_step`, until `end_step` (< 0: no end).

    One expression for both kinds of step: a Python int gives a bool, an integer tensor a bool tensor.
    """
    in_range = (step >= begin_step) & ((step <= end_step) | (end_step < 0))
    return in_range & ((step - begin_step) % frequency == 0)


class PruningSchedule:
    """Base class: decides when masks are updated and to which sparsity.

    Calling a schedule with a step returns `(should_update, sparsity)`. As in tfmot, masks
    update at the steps of `[begin_step, end_step]` that are `frequency` steps apart from
    `begin_step`, and the first training batch is step 1: with `end_step = steps_per_epoch *
    epochs` the final update happens on the last batch when `end_step - begin_step` is a
    multiple of `frequency`.

    A subclass either calls `super().__init__(begin_step, end_step, frequency)` and implements
    `sparsity_at(step)` (as `ConstantSparsity` does), or implements `__call__(step)` alone, as
    schedules written for tfmot do. Both implement `get_config()`.

    Example, a schedule written for tfmot (its `StepIndependentConstantSparsity`), used unchanged:

    ```python
    class StepIndependentConstantSparsity(tfprune.PruningSchedule):
        def __init__(self, target_sparsity):
            self.target_sparsity = target_sparsity

        def __call__(self, step):
            return (True, tf.constant(self.target_sparsity, dtype=tf.float32))

        def get_config(self):
            return {"class_name": self.__class__.__name__, "config": {"target_sparsity": self.target_sparsity}}
    ```
    """

    def __init__(self, begin_step=None, end_step=None, frequency=None):
        if (begin_step, end_step, frequency) == (None, None, None) and self._defined_by_call:
            return  # written tfmot-style: its own `__call__` decides, and tfmot's base takes no arguments
        _check_steps(begin_step, end_step, frequency)
        self.begin_step = int(begin_step)
        self.end_step = int(end_step)
        self.frequency = int(frequency)

    def __call__(self, step):
        step = _as_step(step)
        should_update = _updates_at(step, self.begin_step, self.end_step, self.frequency)
        sparsity = self.sparsity_at(step)
        return should_update, (sparsity if isinstance(step, int) else ops.cast(sparsity, "float32"))

    def decision(self, step):
        """`(update the masks at step?, target sparsity)` as a Python bool and float, for an integer `step`.

        The same answer as calling the schedule, also when its `__call__` returns tensors (tfmot's do).
        """
        should_update, sparsity = self(int(step))
        return bool(should_update), float(sparsity)

    def sparsity_at(self, step):
        """The target sparsity at `step`, whether or not masks update then.

        A schedule written tfmot-style (only `__call__`) gets it from `__call__`.
        """
        if not self._defined_by_call:
            raise NotImplementedError(
                f"{type(self).__name__} must implement sparsity_at(step) or, as tfmot's schedules do, __call__(step)."
            )
        sparsity = self(step)[1]
        return float(sparsity) if is_integer(step) else sparsity

    @functools.cached_property
    def final_sparsity(self):
        """The sparsity pruning ends at: by default the schedule's sparsity at its `end_step`, or at
        `LONG_RUN_STEP` when it has none (or -1). Subclasses that know it set or override it."""
        end_step = getattr(self, "end_step", -1)
        return float(self.sparsity_at(end_step if is_integer(end_step) and end_step >= 0 else LONG_RUN_STEP))

    def updates_until(self, last_step):
        """The steps in `1..last_step` at which masks update (the first batch is step 1).

        A schedule written tfmot-style (only `__call__`) is asked: called once with all these
        steps as a tensor, or once per step if it only takes scalar steps.

        Example:

        >>> PolynomialDecay(0.0, 0.8, begin_step=0, end_step=10, frequency=5).updates_until(10)
        [5, 10]
        """
        if self._defined_by_call:
            return _update_steps_by_calling(self, last_step)
        first = self.begin_step if self.begin_step >= 1 else self.frequency
        last = last_step if self.end_step == -1 else min(last_step, self.end_step)
        return list(range(first, last + 1, self.frequency))

    def shortfall(self, layer_names, last_step):
        """Why a run ending at `last_step` leaves `layer_names` short of this schedule's final sparsity, or None.

        Example:

        >>> ConstantSparsity(0.5, begin_step=100).shortfall(["dense"], 50)[:38]
        'Training ends at step 50: ConstantSpar'
        """
        updates = self.updates_until(last_step)
        reached = self.sparsity_at(updates[-1]) if updates else 0.0
        if reached >= self.final_sparsity - 1e-9:
            return None
        names = ", ".join(layer_names[:4]) + (f" and {len(layer_names) - 4} more" if len(layer_names) > 4 else "")
        if updates:
            final = self.final_sparsity
            digits = 3 if f"{reached:.3g}" != f"{final:.3g}" else 6  # "0.299996 instead of 0.3", not "0.3 instead of 0.3"
            what = (f"runs {len(updates)} mask update(s), the last at step {updates[-1]}, and reaches sparsity "
                    f"{reached:.{digits}g} instead of {final:.{digits}g}")
        else:
            what = "runs no mask update at all, so these layers stay dense"
        # Schedules written tfmot-style may have no begin_step, end_step or frequency: hint with what is known.
        begin_step, end_step, frequency = (getattr(self, name, None) for name in ("begin_step", "end_step", "frequency"))
        if not updates and begin_step is not None and begin_step > last_step:
            hint = f" Pruning begins at step {begin_step}: lower `begin_step` or train longer."
        elif frequency is not None and frequency > last_step:
            hint = f" `frequency`={frequency} exceeds the {last_step} steps of this run: lower it."
        elif end_step is not None:
            hint = (f" Train until step {end_step} or lower `end_step`, keeping end_step - begin_step a "
                    "multiple of `frequency` (the first batch is step 1, as in tfmot).")
        else:
            hint = ""
        return f"Training ends at step {last_step}: {self!r} of {names} {what}.{hint}"

    @property
    def _defined_by_call(self):
        """True for a schedule written tfmot-style, which answers only through its own `__call__`."""
        return type(self).__call__ is not PruningSchedule.__call__

    # tfmot's helpers for its subclasses, so that a schedule written for tfmot runs unchanged.

    def _should_prune_in_step(self, step, begin_step, end_step, frequency):
        return _updates_at(_as_step(step), begin_step, end_step, frequency)

    def _validate_step(self, begin_step, end_step, frequency, allow_negative_1):
        _check_steps(begin_step, end_step, frequency)
        if end_step == -1 and not allow_negative_1:
            raise ValueError(f"{type(self).__name__} needs a finite `end_step`, got -1.")

    def _validate_sparsity(self, sparsity, variable_name):
        check_sparsity(variable_name, sparsity)

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

    def __eq__(self, other):
        return type(self) is type(other) and self._arguments() == other._arguments()

    def __hash__(self):
        return hash(type(self))  # equal schedules share a type; arguments may be unhashable (lists)

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


def _update_steps_by_calling(schedule, last_step):
    """`updates_until` of a schedule known only by its `__call__`: one call with every step as a tensor
    (tfmot's schedules are elementwise), or one call per step when the schedule takes scalar steps only."""
    steps = np.arange(1, max(last_step, 0) + 1, dtype=np.int64)
    try:
        should_update = np.broadcast_to(np.asarray(schedule(ops.convert_to_tensor(steps))[0]), steps.shape)
    except Exception:  # noqa: BLE001 - tf.cond, a Python `if` ... on a vector of steps: ask step by step
        should_update = [schedule.decision(step)[0] for step in steps]
    return [int(step) for step in steps[np.asarray(should_update, dtype=bool)]]


@keras.saving.register_keras_serializable(package="tfprune")
class ConstantSparsity(PruningSchedule):
    """Prunes to one fixed sparsity, every `frequency` steps from `begin_step`.

    Example:

    >>> ConstantSparsity(0.5, begin_step=0, frequency=100)(200)
    (True, 0.5)
    """

    def __init__(self, target_sparsity, begin_step=0, end_step=-1, frequency=100):
        check_sparsity("target_sparsity", target_sparsity)
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


# tfmot's default for prune_low_magnitude: half of the weights, updated every 100 steps from the start.
DEFAULT_SCHEDULE = ConstantSparsity(0.5, begin_step=0)


@keras.saving.register_keras_serializable(package="tfprune")
class FixedMasks(PruningSchedule):
    """Never updates the masks: those set when the model was pruned (by `tfprune.snip`, `tfprune.grasp`)
    stay through training, at `sparsity`.

    Example:

    >>> FixedMasks(0.9)(1000)
    (False, 0.9)
    """

    masks_set_by = "tfprune.snip, tfprune.grasp, tfprune.prune_once or tfprune.sparse_training(method='static')"

    def __init__(self, sparsity):
        check_sparsity("sparsity", sparsity)
        self.sparsity = float(sparsity)

    def __call__(self, step):
        return False, self.sparsity

    @property
    def final_sparsity(self):
        return self.sparsity

    def shortfall(self, layer_names, last_step):
        return None  # the masks were set at the sparsity already

    def get_config(self):
        return self._config(sparsity=self.sparsity)


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
        check_sparsity("initial_sparsity", initial_sparsity)
        check_sparsity("final_sparsity", final_sparsity)
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
        if is_integer(step):
            progress = min(1.0, max(0.0, (step - self.begin_step) / span))
        else:
            progress = ops.clip(ops.cast(step - self.begin_step, "float32") / span, 0.0, 1.0)
        sparsity = self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * (1.0 - progress) ** self.power
        return round(sparsity, 12) if is_integer(step) else sparsity

    def get_config(self):
        return self._config(
            initial_sparsity=self.initial_sparsity,
            final_sparsity=self.final_sparsity,
            begin_step=self.begin_step,
            end_step=self.end_step,
            power=self.power,
            frequency=self.frequency,
        )


def serialize(schedule):
    return schedule.get_config()


def deserialize(config):
    return keras.saving.deserialize_keras_object(config)
