"""Rewinding after pruning: weight rewinding (lottery tickets) and learning-rate rewinding.

Both are `model.fit` callbacks used with `UpdatePruningStep`. They remember a point
of the run, the rewind point (pruning step or epoch k; k = 0 is the start), and act after
every later pruning event, i.e. every step at which the masks changed:

- `WeightRewinding` sets every weight back to its value at k (Frankle & Carbin 2019;
  Frankle et al. 2020), keeping the masks, so the pruned model retrains from there;
- `LearningRateRewinding` keeps the weights and replays the learning-rate schedule
  from k (Renda, Frankle & Carbin 2020).

A pruning event at step s (the controller's masks-changed event, `controller.on_masks_changed`,
fired before batch s trains) is acted on at the end of batch s.
"""

import io
import os

import keras
import numpy as np
from keras import ops

from tfprune.backend_calls import host_value, step_dtype
from tfprune.controller import on_masks_changed
from tfprune.files import atomic_write
from tfprune.graph import compat
from tfprune.stateless import retrace_train_step, sync_variables
from tfprune.validation import is_integer
from tfprune.apply.wrapper import pruning_wrappers, saved_step

OPTIMIZER_STATES = ("reset", "keep")


def rewound_variables(model):
    """The weights that rewinding restores: all of `model.weights` except tfprune's own state.

    Masks, pruning steps and gates stay; kernels, biases and BatchNorm statistics of pruned
    and unpruned layers alike go back (as in open_lth, which rewinds the whole state).
    """
    own_state = set()
    for wrapper in pruning_wrappers(model):
        layer_weights = {id(v) for v in wrapper.layer.weights}
        own_state.update(id(v) for v in wrapper.weights if id(v) not in layer_weights)
    return [v for v in model.weights if id(v) not in own_state]


class WeightSnapshot:
    """The values of a model's rewound weights at one pruning step.

    Example:

    >>> snapshot = WeightSnapshot.take(model, step=0, iteration=0)
    >>> snapshot.save("run/rewind_point.npz")       # atomic
    >>> WeightSnapshot.load("run/rewind_point.npz").restore(model)
    """

    def __init__(self, values, paths, step, iteration):
        self.values, self.paths, self.step, self.iteration = list(values), list(paths), int(step), int(iteration)

    @classmethod
    def take(cls, model, step, iteration):
        variables = rewound_variables(model)
        return cls([host_value(v) for v in variables], [v.path for v in variables], step, iteration)

    def restore(self, model):
        """Assigns the snapshot to `model`, then re-applies every weight's constraint, so that masks hold."""
        variables = rewound_variables(model)
        self._check_matches(variables)
        for variable, value in zip(variables, self.values):
            variable.assign(value)
            if variable.constraint is not None:
                variable.assign(variable.constraint(variable.value))

    def _check_matches(self, variables):
        if len(variables) != len(self.values):
            raise ValueError(
                f"The rewind snapshot holds {len(self.values)} weights but the model has {len(variables)}: it was "
                "taken of a different model. Delete the snapshot file or use the model it was taken of."
            )
        for variable, value, path in zip(variables, self.values, self.paths):
            if tuple(variable.shape) != value.shape:
                raise ValueError(
                    f"The rewind snapshot's weight '{path}' has shape {value.shape} but the model's '{variable.path}' "
                    f"has {tuple(variable.shape)}: it was taken of a different model. Delete the snapshot file or "
                    "use the model it was taken of."
                )

    def save(self, path):
        """Writes the snapshot to `path` (.npz) atomically: a crash never leaves a half-written file."""
        buffer = io.BytesIO()
        np.savez(buffer, paths=np.array(self.paths), step=self.step, iteration=self.iteration,
                 **{f"w{i}": v for i, v in enumerate(self.values)})
        atomic_write(path, buffer.getvalue())

    @classmethod
    def load(cls, path):
        try:
            with np.load(path, allow_pickle=False) as f:
                count = len(f["paths"])
                return cls([f[f"w{i}"] for i in range(count)], [str(p) for p in f["paths"]], f["step"], f["iteration"])
        except (OSError, ValueError, KeyError, EOFError) as error:
            raise ValueError(
                f"Cannot read the rewind snapshot '{path}' ({error}). It is not a snapshot written by tfprune or it "
                "is damaged: delete it to take a new one (the run then needs to pass the rewind point again)."
            ) from error


class _RewindPoint(keras.callbacks.Callback):
    """What both rewinding callbacks share: the rewind point, the step count and pruning events.

    Subclasses implement `_capture()` (at the rewind point) and `_after_pruning()`.
    """

    resume_hint = ""  # how a resumed run keeps the record, for the error when it is missing

    def __init__(self, rewind_step=None, rewind_epoch=None, verbose=1):
        super().__init__()
        if (rewind_step is None) == (rewind_epoch is None):
            raise ValueError("Give the rewind point as exactly one of `rewind_step` (0 is the start) or `rewind_epoch`.")
        for name, value in (("rewind_step", rewind_step), ("rewind_epoch", rewind_epoch)):
            if value is not None and (not is_integer(value) or value < 0):
                raise ValueError(f"`{name}` must be an integer >= 0, got {value!r}.")
        self.rewind_step, self.rewind_epoch, self.verbose = rewind_step, rewind_epoch, verbose
        self.captured_step = None  # the pruning step of the rewind point, once reached
        self._step = 0
        self._pruned_at = None  # the step of the last pruning event
        self._stop_listening = None

    @property
    def _point(self):
        return f"step {self.rewind_step}" if self.rewind_step is not None else f"epoch {self.rewind_epoch}"

    def on_train_begin(self, logs=None):
        self._wrappers = pruning_wrappers(self.model)
        if not self._wrappers:
            raise ValueError(
                f"{type(self).__name__} rewinds after pruning events, but model '{self.model.name}' has no pruned "
                "layers: prune it first (tfprune.prune_low_magnitude or tfprune.prune_channels)."
            )
        if not hasattr(getattr(self.model, "optimizer", None), "iterations"):
            raise ValueError(
                f"{type(self).__name__} needs a Keras optimizer with an `iterations` counter, got "
                f"{type(getattr(self.model, 'optimizer', None)).__name__}: compile the model with a keras.optimizers "
                "optimizer."
            )
        self._step = saved_step(self._wrappers)
        self._check_reachable()
        self._listen()
        if self.captured_step is None and self._step == self._first_step_of_point():
            self._capture_now()

    def _first_step_of_point(self):
        """The pruning step of the rewind point when known before training (a step, or epoch 0), else None."""
        return self.rewind_step if self.rewind_step is not None else (0 if self.rewind_epoch == 0 else None)

    def _check_reachable(self):
        params = self.params or {}
        steps, epochs = params.get("steps"), params.get("epochs")
        if self.captured_step is not None:
            return
        if self._first_step_of_point() is not None and self._step > self._first_step_of_point():
            raise ValueError(
                f"The model is at pruning step {self._step}, past the rewind point ({self._point}), and "
                f"{type(self).__name__} holds no record of it: {self.resume_hint}, or rewind to a later step."
            )
        if steps and epochs:
            if self.rewind_step is not None and self.rewind_step > self._step + steps * epochs:
                raise ValueError(
                    f"rewind_step={self.rewind_step} is beyond this run, which ends at step "
                    f"{self._step + steps * epochs} ({epochs} epochs of {steps} steps): choose a step within training."
                )
            if self.rewind_epoch is not None and self.rewind_epoch > epochs:
                raise ValueError(f"rewind_epoch={self.rewind_epoch} is beyond this run of {epochs} epochs: choose an "
                                 "epoch within training.")

    def _listen(self):
        """Listens to the model's masks-changed event until training ends (a fit that raised stopped early)."""
        if self._stop_listening is not None:
            self._stop_listening()

        def heard_pruning(step):
            self._pruned_at = step

        self._stop_listening = on_masks_changed(self.model, heard_pruning)

    def on_train_batch_end(self, batch=None, logs=None):
        self._step += 1
        if self.captured_step is None:
            if self._step == self.rewind_step:
                self._capture_now()
        elif self._step > self.captured_step and self._pruned_at == self._step:
            sync_variables(self.model)  # only where it acts: a sync makes JAX's fit gather its whole state again
            self._after_pruning()

    def on_epoch_end(self, epoch, logs=None):
        if self.captured_step is None and self.rewind_epoch is not None and epoch + 1 == self.rewind_epoch:
            self._capture_now()

    def on_train_end(self, logs=None):
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None
        if self.captured_step is None and self.verbose:
            compat.print_msg(f"{type(self).__name__}: training ended before the rewind point ({self._point}); "
                               "nothing was recorded or rewound.")

    def _capture_now(self):
        sync_variables(self.model)
        self.captured_step = self._step
        self._capture()

    def _say(self, message):
        if self.verbose:
            compat.print_msg(f"\nStep {self._step}: {message}")


class WeightRewinding(_RewindPoint):
    """Rewinds the surviving weights to their values at step (or epoch) k after every pruning event.

    With k = 0 this is the lottery-ticket procedure; a small k > 0 ("late resetting") makes
    it work on deeper networks. Masks stay; every other weight, biases and BatchNorm
    statistics included, goes back to step k.

    Args:
        rewind_step: the pruning step to rewind to (0: the initial weights), or
        rewind_epoch: the same given in epochs (the end of that epoch).
        optimizer_state: "reset" (default) sets the optimizer back to a freshly built one at
            step k: slot variables (Adam's moments) to their initial values and
            `optimizer.iterations` to its value at k, so learning-rate schedules and Adam's bias
            correction restart from k as well. "keep" leaves the optimizer untouched.
        path: an .npz file that keeps the snapshot, so that a run resumed from a checkpoint
            (`ModelCheckpoint`, `.keras`) can still rewind; loaded when it exists.
        verbose: 1 prints a line at the rewind point and at each rewind.

    Example:

    ```python
    pruned = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(0.8, begin_step=2000, end_step=2000))
    pruned.fit(x, y, epochs=10, callbacks=[tfprune.UpdatePruningStep(), tfprune.WeightRewinding(rewind_step=0)])
    ```
    """

    def __init__(self, rewind_step=None, rewind_epoch=None, optimizer_state="reset", path=None, verbose=1):
        super().__init__(rewind_step, rewind_epoch, verbose)
        if optimizer_state not in OPTIMIZER_STATES:
            raise ValueError(f"`optimizer_state` must be one of {OPTIMIZER_STATES}, got {optimizer_state!r}.")
        self.optimizer_state, self.path = optimizer_state, path
        self.snapshot = None
        self._initial_optimizer_state = None

    resume_hint = "give the callback a `path` so that the snapshot is kept in a file a resumed run reads"

    def on_train_begin(self, logs=None):
        if self.snapshot is None and self.path is not None and os.path.exists(self.path):
            self._load_snapshot_if_resuming()
        super().on_train_begin(logs)

    def _load_snapshot_if_resuming(self):
        """Reads `path` when the model is past the snapshot in it; a run at or before it takes a new one."""
        stored = WeightSnapshot.load(self.path)
        if saved_step(pruning_wrappers(self.model)) <= stored.step:
            return
        if self.rewind_step is not None and stored.step != self.rewind_step:
            raise ValueError(f"'{self.path}' holds the weights of step {stored.step}, not of rewind_step="
                             f"{self.rewind_step}: give the rewind point of the run that wrote it, or another path.")
        self.snapshot, self.captured_step = stored, stored.step

    def _capture(self):
        self.snapshot = WeightSnapshot.take(self.model, self._step, int(host_value(self.model.optimizer.iterations)))
        if self.path is not None:
            self.snapshot.save(self.path)
        self._say(f"recorded the weights to rewind to{'' if self.path is None else ' in ' + self.path}.")

    def _after_pruning(self):
        self.snapshot.restore(self.model)
        if self.optimizer_state == "reset":
            self._reset_optimizer()
        self._say(f"pruned; weights rewound to step {self.snapshot.step}"
                  f"{', optimizer reset' if self.optimizer_state == 'reset' else ''}.")

    def _reset_optimizer(self):
        optimizer = self.model.optimizer
        state = optimizer_slots(optimizer)
        if self._initial_optimizer_state is None:
            fresh = optimizer.__class__.from_config(optimizer.get_config())
            fresh.build(self.model.trainable_variables)
            self._initial_optimizer_state = [host_value(v) for v in optimizer_slots(fresh)]
        if [tuple(v.shape) for v in state] != [v.shape for v in self._initial_optimizer_state]:
            raise ValueError(
                f"Cannot reset the {type(optimizer).__name__} optimizer: a fresh one has different variables. Use "
                "WeightRewinding(..., optimizer_state='keep')."
            )
        for variable, value in zip(state, self._initial_optimizer_state):
            variable.assign(value)
        optimizer.iterations.assign(self.snapshot.iteration)


def learning_rate_schedule(optimizer):
    """The optimizer's `LearningRateSchedule`, or None when its rate is a float."""
    current = compat.learning_rate_state(optimizer)
    return current if isinstance(current, keras.optimizers.schedules.LearningRateSchedule) else None


def optimizer_slots(optimizer):
    """The optimizer's per-weight state (moments, accumulators): its variables but the step and learning rate."""
    learning_rate = compat.learning_rate_state(optimizer)
    return [v for v in optimizer.variables if v is not optimizer.iterations and v is not learning_rate]


@keras.saving.register_keras_serializable(package="tfprune")
class RewoundSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A learning-rate schedule replayed from an earlier step: `lr(i) = schedule(i - offset)`.

    `LearningRateRewinding` installs it in the optimizer; the offset lives in a variable, so
    that rewinding needs no retracing, and in the config, so that `.keras` files resume.

    Args:
        schedule: a `LearningRateSchedule`, or a function of the optimizer step.
        offset: optimizer steps to go back.
        rewind_iteration: the optimizer step of the rewind point, once reached.

    Example:

    >>> lr = RewoundSchedule(keras.optimizers.schedules.ExponentialDecay(0.1, 100, 0.5), offset=100)
    >>> round(float(lr(200)), 6)  # the schedule's value at step 100
    0.05
    """

    def __init__(self, schedule, offset=0, rewind_iteration=None):
        if isinstance(schedule, dict):
            schedule = keras.saving.deserialize_keras_object(schedule)
        if not callable(schedule):
            raise ValueError(f"`schedule` must be a LearningRateSchedule or a function of the step, got {schedule!r}.")
        self.schedule = schedule
        self.offset = keras.Variable(int(offset), dtype=step_dtype(), trainable=False, name="learning_rate_offset")
        self.rewind_iteration = rewind_iteration

    def __call__(self, step):
        step = ops.convert_to_tensor(step)
        return self.schedule(ops.subtract(step, ops.cast(self.offset.value, step.dtype)))

    def get_config(self):
        return {
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "offset": int(host_value(self.offset)),
            "rewind_iteration": self.rewind_iteration,
        }


class LearningRateRewinding(_RewindPoint):
    """Keeps the weights after every pruning event and replays the learning-rate schedule from step k.

    The optimizer's `LearningRateSchedule` is wrapped in a `RewoundSchedule`; an optimizer
    with a plain float learning rate gets `schedule` instead (a `LearningRateSchedule` or a
    function of the optimizer step: this callback then drives the rate, so do not combine it
    with another callback that sets the rate). `optimizer.iterations` and the pruning step
    keep counting as before: only the learning rate goes back.

    Args:
        rewind_step, rewind_epoch: the rewind point, as in `WeightRewinding`.
        schedule: the schedule to use when the optimizer's learning rate is a float; give a
            `LearningRateSchedule` (serializable) when the run must resume from a `.keras` file.
        verbose: 1 prints a line at the rewind point and at each rewind.

    Example:

    ```python
    lr = keras.optimizers.schedules.PiecewiseConstantDecay([3000, 6000], [0.1, 0.01, 0.001])
    pruned.compile(keras.optimizers.SGD(lr, momentum=0.9), ...)
    pruned.fit(x, y, epochs=30, callbacks=[tfprune.UpdatePruningStep(), tfprune.LearningRateRewinding(0)])
    ```
    """

    resume_hint = "resume from a model saved after the rewind point (its optimizer's RewoundSchedule keeps it)"

    def __init__(self, rewind_step=None, rewind_epoch=None, schedule=None, verbose=1):
        super().__init__(rewind_step, rewind_epoch, verbose)
        self.schedule = schedule

    def on_train_begin(self, logs=None):
        self.rewound = self._install_schedule()
        if self.captured_step is None and self.rewound.rewind_iteration is not None:
            self.captured_step = -1  # reached in an earlier run of this model: its optimizer saved the point
        super().on_train_begin(logs)

    def _install_schedule(self):
        optimizer = self.model.optimizer
        current = learning_rate_schedule(optimizer)
        if isinstance(current, RewoundSchedule):
            return current
        if current is not None:
            if self.schedule is not None:
                raise ValueError("The optimizer already has a learning-rate schedule: do not pass `schedule` too.")
            schedule = current
        elif self.schedule is None:
            raise ValueError(
                "The optimizer's learning rate is a constant, so replaying it changes nothing. Pass the schedule to "
                "replay: LearningRateRewinding(..., schedule=keras.optimizers.schedules.CosineDecay(...)), or "
                "compile with an optimizer whose learning_rate is a LearningRateSchedule."
            )
        else:
            schedule = self.schedule
        rewound = RewoundSchedule(schedule)
        optimizer.learning_rate = rewound
        retrace_train_step(self.model)  # the traced step must read the new schedule
        return rewound

    def _capture(self):
        self.rewound.rewind_iteration = int(host_value(self.model.optimizer.iterations))
        self._say("recorded the learning-rate schedule's rewind point.")

    def _after_pruning(self):
        offset = int(host_value(self.model.optimizer.iterations)) - self.rewound.rewind_iteration
        self.rewound.offset.assign(offset)
        if keras.backend.backend() == "jax":
            retrace_train_step(self.model)  # the offset is not in JAX's train state: its traced value would stay
        self._say(f"pruned; learning-rate schedule replayed from optimizer step {self.rewound.rewind_iteration}.")
