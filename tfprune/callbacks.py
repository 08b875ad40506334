"""Callbacks that drive pruning during `model.fit`, and log it to TensorBoard."""

import os
import warnings

import keras
import tensorflow as tf  # TensorBoard writing is TensorFlow-only: this module is at the edge.

from tfprune.controller import PruningController
from tfprune.report import sparsity_report


class UpdatePruningStep(keras.callbacks.Callback):
    """Advances the pruning schedules and updates masks; required to `fit` a pruned model.

    The schedule step counts training batches across `fit` calls. It is stored in the
    model at every mask update and at the end of each epoch, so a model saved with
    `ModelCheckpoint` (per epoch) resumes where it stopped.

    Example:

    ```python
    model = tfprune.prune_low_magnitude(model, tfprune.PolynomialDecay(0.0, 0.8, 0, 1000))
    model.compile(...)
    model.fit(x, y, epochs=5, callbacks=[tfprune.UpdatePruningStep()])
    ```

    In a custom training loop, call `on_train_begin()` once, `on_train_batch_begin(batch)`
    before each step and `on_epoch_end(epoch)` / `on_train_end()` as `fit` would.
    """

    def __init__(self):
        super().__init__()
        self.controller = None
        self.step = 0
        self._epoch_start = 0
        self._warned = False

    def on_train_begin(self, logs=None):
        self.controller = PruningController(self.model)
        self.controller.set_step_driven(True)
        self.step = self._epoch_start = self.controller.step
        self._warned = False
        if hasattr(self.model, "make_train_function"):
            # Trace a fresh train step: one traced without this callback raised, and is unusable.
            self.model.make_train_function(force=True)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self.step
        steps, epochs = self.params.get("steps"), self.params.get("epochs")
        if not self._warned and steps and epochs:
            self._warn_if_unfinished(self.step + (epochs - epoch) * steps - 1)

    def on_train_batch_begin(self, batch, logs=None):
        self.step = self._epoch_start + batch
        self.controller.update(self.step)

    def on_train_batch_end(self, batch, logs=None):
        self.step = self._epoch_start + batch + 1

    def on_epoch_end(self, epoch, logs=None):
        self.controller.save_step(self.step)

    def on_train_end(self, logs=None):
        self.controller.save_step(self.step)
        self.controller.reapply_masks()  # `fit` has just swapped in EMA weights, if the optimizer keeps them
        self.controller.set_step_driven(False)
        if not self._warned:
            self._warn_if_unfinished(self.step - 1)
        # The next fit must retrace its train step, so that fitting without this callback is caught.
        if hasattr(self.model, "train_function"):
            self.model.train_function = None

    def _warn_if_unfinished(self, last_step):
        unfinished = self.controller.unfinished_schedules(last_step)
        if unfinished:
            self._warned = True
            names = ", ".join(w.layer.name for w in unfinished[:5])
            end = max(w.pruning_schedule.end_step for w in unfinished)
            warnings.warn(
                f"Training stops at step {last_step + 1} but the pruning schedule of {names} ends at step {end}: "
                "the model will not reach its final sparsity. Train for more epochs or lower `end_step` "
                "(PolynomialDecay.from_epochs helps).",
                stacklevel=2,
            )


class PruningSummaries(keras.callbacks.Callback):
    """Writes per-layer and total sparsity as TensorBoard scalars.

    Scalars `sparsity/<layer>/<weight>` and `sparsity/total` go to `<log_dir>/pruning`,
    every epoch (`update_freq="epoch"`) or every N batches (`update_freq=N`).

    Example:

    ```python
    model.fit(x, y, callbacks=[tfprune.UpdatePruningStep(), tfprune.PruningSummaries("logs")])
    ```
    """

    def __init__(self, log_dir, update_freq="epoch"):
        super().__init__()
        if update_freq != "epoch" and not (isinstance(update_freq, int) and update_freq > 0):
            raise ValueError(f"`update_freq` must be 'epoch' or a positive number of batches, got {update_freq!r}.")
        self.log_dir = os.fspath(log_dir)
        self.update_freq = update_freq
        self._writer = None
        self._batches = 0

    def on_train_begin(self, logs=None):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "pruning"))

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        if self.update_freq != "epoch" and self._batches % self.update_freq == 0:
            self._write(self._batches)

    def on_epoch_end(self, epoch, logs=None):
        if self.update_freq == "epoch":
            self._write(epoch)

    def on_train_end(self, logs=None):
        self._writer.flush()

    def _write(self, step):
        report = sparsity_report(self.model)
        with self._writer.as_default():
            for row in report["layers"]:
                tf.summary.scalar(f"sparsity/{row['layer']}/{row['weight']}", row["sparsity"], step=step)
            tf.summary.scalar("sparsity/total", report["total"]["sparsity"], step=step)
