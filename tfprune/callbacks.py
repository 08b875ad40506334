"""Callbacks that drive pruning during `model.fit`, and log it to TensorBoard (TensorFlow imported lazily)."""

import os
import warnings

import keras

from tfprune.controller import PruningController
from tfprune.report import sparsity_report
from tfprune.stateless import retrace_train_step, sync_variables
from tfprune.apply.wrapper import pruning_wrappers, saved_step


class UpdatePruningStep(keras.callbacks.Callback):
    """Advances the pruning schedules and updates masks; required to `fit` a pruned model.

    The step counts training batches across `fit` calls, as in tfmot: the first batch
    is step 1, so `end_step = steps_per_epoch * epochs` reaches the final sparsity on the
    last batch. The step is stored in the model at every mask update and at the end of
    each epoch, so a model saved with `ModelCheckpoint` (per epoch) resumes where it stopped.

    Example:

    ```python
    model = tfprune.prune_low_magnitude(model, tfprune.PolynomialDecay(0.0, 0.8, 0, 1000))
    model.compile(...)
    model.fit(x, y, epochs=5, callbacks=[tfprune.UpdatePruningStep()])
    ```

    In a custom training loop, call `on_train_begin()` once, `on_train_batch_begin()` before
    each step, `on_epoch_end()` after each epoch and `on_train_end()` at the end. Batch and
    epoch arguments are ignored (tfmot's loop passes `batch=-1`): every call of
    `on_train_batch_begin` is one more step.

    Args:
        update_masks: False keeps the masks as they are (the step still counts, is saved
            and warms up penalties), for drivers that set the masks themselves, such as
            `IterativePruning`.
    """

    def __init__(self, update_masks=True):
        super().__init__()
        self.update_masks = update_masks
        self.controller = None
        self.step = 0
        self._warned = False
        self._forecast = False
        self._finished = 0  # the last step whose batch-end work (`PruningController.finish_step`) is done

    def on_train_begin(self, logs=None):
        if not pruning_wrappers(self.model):  # tfmot's callback does nothing then: say so
            warnings.warn(f"UpdatePruningStep does nothing: model '{self.model.name}' has no pruned layers.",
                          stacklevel=2)
            self.controller = None
            return
        self.controller = PruningController(self.model)
        self.controller.set_step_driven(True)
        self.step = self._finished = self.controller.step  # a saved model holds the moves of its step
        self._warned = not self.update_masks  # held masks fall short of no schedule
        self._forecast = False
        # A fresh train step: one traced without this callback raised, and is unusable; under JAX the
        # optimizer runs statelessly, and the step applies the masks of the train state after it.
        retrace_train_step(self.model)

    def on_epoch_begin(self, epoch=None, logs=None):
        steps, epochs = (self.params or {}).get("steps"), (self.params or {}).get("epochs")
        if self.controller and not (self._warned or self._forecast) and steps and epochs and epoch is not None:
            self._forecast = True  # the step this fit ends at is the same from every epoch: check it once
            self._warn_if_short(self.step + (epochs - epoch) * steps)

    def on_train_batch_begin(self, batch=None, logs=None):
        if self.controller:
            self._finish_step()
            self.step += 1
            self.controller.update(self.step, self.update_masks)

    def on_epoch_end(self, epoch=None, logs=None, batch=None):
        if self.controller:
            self._finish_step()
            self.controller.save_step(self.step)

    def on_train_end(self, logs=None):
        if not self.controller:
            return
        self._finish_step()
        self.controller.save_step(self.step)
        self.controller.reapply_masks()  # `fit` has just swapped in EMA weights, if the optimizer keeps them
        self.controller.set_step_driven(False)
        if not self._warned:
            self._warn_if_short(self.step)
        # The next fit must retrace its train step, so that fitting without this callback is caught.
        if hasattr(self.model, "train_function"):
            self.model.train_function = None
        vars(self.model).pop("train_step", None)  # JAX: the masked train step installed by on_train_begin

    def _finish_step(self):
        """What follows the batch of the step just taken (dynamic sparse training moves weights), once per step: at
        the next batch, or at the end of the epoch or of training, before the step is saved. Not in
        `on_train_batch_end`, which would make Keras run every batch-end callback in step with training."""
        if self.update_masks and self._finished < self.step:
            self._finished = self.step
            self.controller.finish_step(self.step)

    def _warn_if_short(self, last_step):
        for line in self.controller.shortfalls(last_step):
            self._warned = True
            warnings.warn(line, stacklevel=2)


class PruningSummaries(keras.callbacks.Callback):
    """Writes per-weight and total sparsity as TensorBoard scalars against the pruning step.

    Scalars `sparsity/<variable path>`, `sparsity/total` and `sparsity/nonzero_under_mask` (pruned
    entries that are non-zero again, normally 0) go to `<log_dir>/pruning`:
    at the start of every epoch (as tfmot does) and at the end of training, or every N
    batches with `update_freq=N`. Outside `fit`, call `on_epoch_begin()` yourself.

    Example:

    ```python
    model.fit(x, y, callbacks=[tfprune.UpdatePruningStep(), tfprune.PruningSummaries("logs")])
    ```
    """

    def __init__(self, log_dir, update_freq="epoch"):
        super().__init__()
        if not isinstance(log_dir, (str, os.PathLike)) or not os.fspath(log_dir):
            raise ValueError(f"`log_dir` must be a non-empty string or path, got {log_dir!r}.")
        if update_freq != "epoch" and not (isinstance(update_freq, int) and update_freq > 0):
            raise ValueError(f"`update_freq` must be 'epoch' or a positive number of batches, got {update_freq!r}.")
        self.log_dir = os.fspath(log_dir)
        self.update_freq = update_freq
        self._writer = None
        self._batches = 0

    def on_epoch_begin(self, epoch=None, logs=None):
        if self.update_freq == "epoch":
            self._write()

    def on_train_batch_end(self, batch=None, logs=None):
        self._batches += 1
        if self.update_freq != "epoch" and self._batches % self.update_freq == 0:
            self._write()

    def on_train_end(self, logs=None):
        self._write()

    def _write(self):
        import tensorflow as tf  # TensorBoard event files are written by TensorFlow, only when logging

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "pruning"))
        sync_variables(self.model)
        step = saved_step(pruning_wrappers(self.model))
        report = sparsity_report(self.model)
        with self._writer.as_default():
            for row in report["layers"]:
                tf.summary.scalar(f"sparsity/{row['weight']}", row["sparsity"], step=step)
            tf.summary.scalar("sparsity/total", report["total"]["sparsity"], step=step)
            # 0 unless pruned weights came back around their masks (sparsity_report warns then)
            tf.summary.scalar("sparsity/nonzero_under_mask", report["total"]["nonzero_under_mask"], step=step)
        self._writer.flush()
