"""`IterativePruning`: rounds of train -> prune a fraction of the remaining weights -> reset -> train.

The lottery-ticket procedure (Frankle & Carbin 2019) and its retraining variants
(Renda et al. 2020) as one resumable driver around the user's own `fit`:

- round 0 trains the model as given (dense, or already pruned);
- each later round prunes `rate` of the weights that remain, by magnitude (per layer,
  or ranked globally), then resets according to `mode` and trains the same budget:
  "weights" rewinds the weights to step k, "lr" keeps them and replays the learning
  rate from step k, "finetune" keeps them and trains at a small constant rate.

Every round starts with a fresh optimizer, so modes differ only in what the paper varies.
After each round the driver saves the weights, masks, rewind snapshot and results
atomically in `directory`: a killed run resumes at the last finished round.
"""

import copy
import json
import os
import shutil
import tempfile
import time

import keras
import numpy as np

from tfprune import masks as masks_lib
from tfprune import schedules
from tfprune.api import prune_low_magnitude
from tfprune.backend_calls import host_value
from tfprune.callbacks import UpdatePruningStep
from tfprune.controller import PruningController
from tfprune.files import atomic_write, publish_directory
from tfprune.rewinding import (
    RewoundSchedule,
    WeightRewinding,
    WeightSnapshot,
    learning_rate_schedule,
)
from tfprune.validation import is_integer
from tfprune.selection.allocation import check_scope
from tfprune.apply.wrapper import PruneLowMagnitude, pruning_wrappers, saved_step

MODES = ("weights", "lr", "finetune")
CONTROLS = (None, "reinit", "random_mask")
RESULTS_FILE = "results.json"

# The schedule of the wrappers the driver puts on a dense model. Its one update, at step 0, is never
# run by UpdatePruningStep (whose first batch is step 1): the masks the driver set hold in later fits.
MASKS_SET_BY_DRIVER = schedules.ConstantSparsity(0.0, begin_step=0, end_step=0, frequency=1)


class IterativePruning:
    """Iterative magnitude pruning with weight rewinding, learning-rate rewinding or fine-tuning.

    Args:
        model: a built Keras model, dense or already wrapped by `prune_low_magnitude` with
            the same granularity. A dense model is copied; a pruned one is trained in place,
            its masks set by the driver alone (its wrappers' schedules apply again only if you
            fit it later with `UpdatePruningStep`).
        compile_kwargs: `model.compile` arguments; `optimizer` is required and re-created
            fresh (from its config) every round.
        train_data: `(x, y)` arrays or a batched `tf.data.Dataset` (tensorflow-datasets too).
        rounds: pruning rounds after the first training (round 0).
        mode: "weights", "lr" or "finetune" (see the module docstring).
        rate: fraction of the remaining weights pruned per round, in (0, 1).
        layer_rates: `{layer name: rate}` overrides, e.g. half the rate on the output layer.
        scope: "layer" (each weight pruned by `rate`) or "global" (one ranking across the
            layers without an override).
        rewind_step: k, the step of round 0 that "weights" rewinds to and "lr" replays from.
        control: None, "reinit" (the winning mask, weights drawn afresh from the
            initializers; mode "weights") or "random_mask" (random masks with the
            per-layer sparsity magnitude pruning would give).
        finetune_learning_rate: the constant rate of mode "finetune"; default the rate at
            the end of round 0.
        validation_data, test_data: `(x, y)` or datasets; validation picks the best epoch
            of a round, test gives the accuracy reported for it.
        fit_kwargs: more `fit` arguments (epochs, batch_size, callbacks, ...): the budget
            of every round. The driver's callbacks run before the user's; it brings its
            own `UpdatePruningStep`.
        metric: the compiled metric to report, default "accuracy".
        block_size, block_pooling_type: the pruning granularity, as in `prune_low_magnitude`.
        directory: where checkpoints, `results.json` and the plot go; None keeps nothing.
        seed: seeds shuffling, dropout, random masks and re-initialisation of every round.
        verbose: 1 prints one line per round.

    Example:

    ```python
    driver = tfprune.IterativePruning(
        model, dict(optimizer=keras.optimizers.Adam(1.2e-3), loss="sparse_categorical_crossentropy",
                    metrics=["accuracy"]),
        (x_train, y_train), rounds=10, mode="weights", layer_rates={"output": 0.1},
        validation_data=(x_val, y_val), test_data=(x_test, y_test),
        fit_kwargs=dict(epochs=10, batch_size=60), directory="runs/lottery", seed=0)
    rows = driver.run()   # one row per round; driver.model is the last pruned model
    ```
    """

    def __init__(self, model, compile_kwargs, train_data, rounds, mode="weights", rate=0.2, layer_rates=None,
                 scope="layer", rewind_step=0, control=None, finetune_learning_rate=None, validation_data=None,
                 test_data=None, fit_kwargs=None, metric="accuracy", block_size=(1, 1), block_pooling_type="AVG",
                 directory=None, seed=0, verbose=1):
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}.")
        if control not in CONTROLS:
            raise ValueError(f"`control` must be one of {CONTROLS}, got {control!r}.")
        if control == "reinit" and mode != "weights":
            raise ValueError("control='reinit' replaces the rewound weights by new random ones: it needs "
                             "mode='weights'.")
        if not is_integer(rounds) or rounds < 1:
            raise ValueError(f"`rounds` must be an integer >= 1 (pruning rounds after the first training), got "
                             f"{rounds!r}.")
        check_scope(scope)
        if not is_integer(rewind_step) or rewind_step < 0:
            raise ValueError(f"`rewind_step` must be an integer >= 0, got {rewind_step!r}.")
        _check_rate("rate", rate)
        self.layer_rates = dict(layer_rates or {})
        for name, layer_rate in self.layer_rates.items():
            _check_rate(f"layer_rates[{name!r}]", layer_rate)
        if "optimizer" not in compile_kwargs:
            raise ValueError("`compile_kwargs` needs an `optimizer`: the driver builds a fresh one from it every "
                             "round.")
        self.optimizer_config = _optimizer_config(compile_kwargs["optimizer"])
        self.compile_kwargs = {k: v for k, v in compile_kwargs.items() if k != "optimizer"}
        self.granularity = masks_lib.Granularity(block_size, block_pooling_type)
        self.model = _pruned_for_driver(model, self.granularity)
        self.controller = PruningController(self.model)
        self.wrappers = [w for w in self.controller.wrappers if w.masks]
        unknown = set(self.layer_rates) - {w.layer.name for w in self.wrappers}
        if unknown:
            raise ValueError(f"`layer_rates` names layers that are not pruned: {sorted(unknown)}. Pruned layers: "
                             f"{[w.layer.name for w in self.wrappers]}.")
        self.rounds, self.mode, self.rate, self.scope, self.rewind_step, self.control = (
            int(rounds), mode, float(rate), scope, int(rewind_step), control)
        self.finetune_learning_rate = finetune_learning_rate
        self.train_data, self.validation_data, self.test_data = train_data, validation_data, test_data
        self.fit_kwargs = dict(fit_kwargs or {})
        if any(isinstance(c, UpdatePruningStep) for c in self.fit_kwargs.get("callbacks", ())):
            raise ValueError("`fit_kwargs['callbacks']` holds an UpdatePruningStep: leave it out, the driver adds its "
                             "own, which keeps the masks it sets between rounds.")
        self.metric, self.directory, self.seed, self.verbose = metric, directory, int(seed), verbose
        self.rows = []
        self.snapshot = None
        self._round_zero_steps = None

    # --- settings: what a checkpoint must agree with ---

    def settings(self):
        """Everything that changes the results; a resumed run must match its checkpoint on all of it."""
        x, y = _x_and_y(self.train_data)
        data_shapes = None if y is None else [list(np.shape(x)), list(np.shape(y))]
        return {
            "mode": self.mode, "rate": self.rate, "layer_rates": self.layer_rates, "scope": self.scope,
            "rewind_step": self.rewind_step, "control": self.control,
            "finetune_learning_rate": self.finetune_learning_rate, "metric": self.metric, "seed": self.seed,
            "granularity": repr(self.granularity),
            "optimizer": _jsonable({**self.optimizer_config, "config": {
                k: v for k, v in self.optimizer_config["config"].items() if k != "name"}}),  # names are counters
            "fit_kwargs": _jsonable({k: v for k, v in self.fit_kwargs.items() if k not in ("callbacks", "verbose")}),
            "train_data_shapes": data_shapes,
            "pruned_weight_shapes": [list(v.shape) for w in self.wrappers for v in w.pruned_weights],
        }

    # --- the rounds ---

    def run(self):
        """Runs (or resumes) every round; returns the results, one dict per round."""
        start = self._resume() if self.directory else 0
        for round_index in range(start, self.rounds + 1):
            began = time.perf_counter()
            if round_index > 0:
                self._prune(round_index)
                self._reset(round_index)
            row = self._train(round_index)
            row["seconds"] = round(time.perf_counter() - began, 2)
            self.rows.append(row)
            if self.directory:
                self._save_checkpoint(round_index)
            if self.verbose:
                print(_progress_line(row, self.rounds, self.metric), flush=True)
        if self.directory:
            plot_pruning_curves({self.mode: [self.rows]}, os.path.join(self.directory, "accuracy.png"))
        return self.rows

    def _train(self, round_index):
        keras.utils.set_random_seed(self.seed * 1000 + round_index)
        self.model.compile(optimizer=self._optimizer(round_index), **self.compile_kwargs)
        # Round 0 records step k (and, for "lr", checks that k is within a round).
        snapshot_taker = (WeightRewinding(rewind_step=self.rewind_step, verbose=0)
                          if round_index == 0 and self.mode != "finetune" else None)
        callbacks = [UpdatePruningStep(update_masks=False), *([snapshot_taker] if snapshot_taker else []),
                     *self.fit_kwargs.get("callbacks", [])]
        first_step = saved_step(self.wrappers)
        x, y = _x_and_y(self.train_data)
        # arrays are shuffled by fit, datasets by themselves
        kwargs = {"verbose": 0, "shuffle": y is not None, **self.fit_kwargs, "callbacks": callbacks}
        history = self.model.fit(x, y, validation_data=self.validation_data, **kwargs).history
        steps = saved_step(self.wrappers) - first_step
        if round_index == 0:
            self._round_zero_steps = steps
        if snapshot_taker is not None:
            if snapshot_taker.snapshot is None:
                raise ValueError(f"rewind_step={self.rewind_step} is beyond the {steps} steps of a round: choose "
                                 "a step within training.")
            self.snapshot = snapshot_taker.snapshot if self.mode == "weights" else None
        return self._row(round_index, history, steps)

    def _optimizer(self, round_index):
        optimizer = keras.optimizers.deserialize(copy.deepcopy(self.optimizer_config))  # Keras edits the config
        schedule = learning_rate_schedule(optimizer)
        if round_index == 0:
            return optimizer
        if self.mode == "finetune":
            config = optimizer.get_config()
            config["learning_rate"] = self._finetune_rate(schedule, optimizer)
            return optimizer.__class__.from_config(config)
        if schedule is not None:  # "weights" and "lr" replay the schedule from step k
            optimizer.learning_rate = RewoundSchedule(schedule, offset=-self.rewind_step)
        return optimizer

    def _finetune_rate(self, schedule, optimizer):
        if self.finetune_learning_rate is not None:
            return float(self.finetune_learning_rate)
        if schedule is None:
            return float(host_value(optimizer.learning_rate))
        return float(host_value(schedule(self._round_zero_steps)))

    def _prune(self, round_index):
        """Prunes `rate` of the remaining weights (per weight, or ranked globally), then applies the masks."""
        kept = {w: [host_value(m) != 0 for m in w.masks] for w in self.wrappers}
        own_rates = {w: self.layer_rates.get(w.layer.name, self.rate) for w in self.wrappers
                     if self.scope == "layer" or w.layer.name in self.layer_rates}
        overrides = {w: [1 - k.mean() * (1 - rate) for k in kept[w]] for w, rate in own_rates.items()}
        together = [k for w, ks in kept.items() if w not in overrides for k in ks]
        remaining = sum(int(k.sum()) for k in together) / max(1, sum(k.size for k in together))
        if self.control == "random_mask":  # the random masks' survivors keep these values
            values = {w: [host_value(v) for v in w.pruned_weights] for w in self.wrappers}
        self.controller.prune_to(1 - remaining * (1 - self.rate), overrides, scope=self.scope)
        if self.control == "random_mask":  # as many per weight, chosen at random among the survivors
            rng = np.random.default_rng([self.seed, round_index])
            for w in self.wrappers:
                masks = [masks_lib.threshold_masks([(1 - rng.random(k.shape)) * k], 1 - host_value(m).mean(),
                                                   self.granularity, [a])[0]
                         for k, m, a in zip(kept[w], w.masks, w.weight_axes)]
                for variable, value in zip(w.pruned_weights, values[w]):
                    variable.assign(value)
                w.apply_masks(masks, w.pruning_step.value)

    def _reset(self, round_index):
        if self.mode != "weights":
            return
        if self.control == "reinit":
            keras.utils.set_random_seed(self.seed * 1000 + round_index + 500)
            WeightSnapshot.take(keras.models.clone_model(self.model), 0, 0).restore(self.model)
        else:
            self.snapshot.restore(self.model)

    def _row(self, round_index, history, steps):
        watched = f"val_{self.metric}" if f"val_{self.metric}" in history else self.metric
        curve = history.get(watched, [])
        best_epoch = int(np.argmax(curve)) if curve else None
        epochs = len(curve) or 1
        losses = history.get("val_loss")
        masks = {w.layer.name: [host_value(m) for m in w.masks] for w in self.wrappers}
        return {
            "round": round_index,
            "weights_remaining": round(100 * float(sum(m.sum() for ms in masks.values() for m in ms))
                                       / sum(m.size for ms in masks.values() for m in ms), 4),
            "layer_sparsity": {name: round(1 - float(np.mean([m.mean() for m in ms])), 4) for name, ms in masks.items()},
            f"test_{self.metric}": self._test_metric(),
            f"best_{watched}": None if best_epoch is None else float(curve[best_epoch]),
            "best_step": None if best_epoch is None else (best_epoch + 1) * steps // epochs,
            # the paper's early-stopping point: the end of the epoch with the lowest validation loss
            "min_val_loss_step": None if not losses else (int(np.argmin(losses)) + 1) * steps // epochs,
            "steps": steps,
        }

    def _test_metric(self):
        if self.test_data is None:
            return None
        x, y = _x_and_y(self.test_data)
        batch_size = self.fit_kwargs.get("batch_size") if y is not None else None
        return float(self.model.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True)[self.metric])

    # --- checkpoints ---

    def _save_checkpoint(self, round_index):
        """Writes round `round_index` into a new folder, then points results.json at it (atomic rename)."""
        os.makedirs(self.directory, exist_ok=True)
        name = f"round-{round_index:03d}"
        staging = tempfile.mkdtemp(dir=self.directory, prefix=f".{name}-")
        self.model.save_weights(os.path.join(staging, "model.weights.h5"))
        if self.snapshot is not None:
            self.snapshot.save(os.path.join(staging, "snapshot.npz"))
        publish_directory(staging, os.path.join(self.directory, name))  # replaces one left by a killed run
        state = {"settings": self.settings(), "checkpoint": name, "round_zero_steps": self._round_zero_steps,
                 "rows": self.rows}
        atomic_write(os.path.join(self.directory, RESULTS_FILE), json.dumps(state, indent=1).encode())
        for entry in os.listdir(self.directory):  # older rounds, and folders of killed runs
            if entry != name and (entry.startswith("round-") or entry.startswith(".round-")):
                shutil.rmtree(os.path.join(self.directory, entry), ignore_errors=True)

    def _resume(self):
        """Loads the last finished round from `directory`; returns the round to run next (0 if none)."""
        path = os.path.join(self.directory, RESULTS_FILE)
        if not os.path.exists(path):
            return 0
        try:
            with open(path) as f:
                state = json.load(f)
            checkpoint = os.path.join(self.directory, state["checkpoint"])
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(f"Cannot read the checkpoint '{path}' ({error}): it is damaged. Delete the directory "
                             "to start again, or use another one.") from error
        differences = _differences(state["settings"], _jsonable(self.settings()))
        if differences:
            raise ValueError(
                f"'{self.directory}' holds a run with other settings, so resuming it would mix two experiments: "
                + "; ".join(differences) + ". Use the same settings to resume, or another directory for a new run."
            )
        self.model.load_weights(os.path.join(checkpoint, "model.weights.h5"))
        if os.path.exists(os.path.join(checkpoint, "snapshot.npz")):
            self.snapshot = WeightSnapshot.load(os.path.join(checkpoint, "snapshot.npz"))
        self._round_zero_steps = state["round_zero_steps"]
        self.rows = state["rows"]
        if self.verbose:
            print(f"Resuming from '{self.directory}': {len(self.rows)} round(s) done.", flush=True)
        return len(self.rows)


def _x_and_y(data):
    """`fit`'s x and y: the two arrays of an `(x, y)` pair, or a dataset and None."""
    return tuple(data) if isinstance(data, (tuple, list)) else (data, None)


def _check_rate(name, rate):
    if not isinstance(rate, (int, float)) or not 0.0 < rate < 1.0:
        raise ValueError(f"`{name}` must be a fraction of the remaining weights in (0, 1), got {rate!r}: 0.2 prunes "
                         "a fifth of them each round.")


def _optimizer_config(optimizer):
    """The config the driver re-creates a fresh optimizer from every round."""
    try:
        optimizer = keras.optimizers.get(optimizer)
    except ValueError as error:
        raise ValueError(f"The driver needs a Keras optimizer with an `iterations` counter, got {optimizer!r} "
                         f"({error}).") from error
    if not hasattr(optimizer, "iterations"):
        raise ValueError(f"The optimizer {optimizer!r} has no `iterations` counter: use a keras.optimizers optimizer.")
    return keras.optimizers.serialize(optimizer)


def _pruned_for_driver(model, granularity):
    """The model with a PruneLowMagnitude wrapper of `granularity` on every prunable layer, masks held."""
    wrappers = pruning_wrappers(model)
    if not wrappers:
        return prune_low_magnitude(model, MASKS_SET_BY_DRIVER, block_size=granularity.block_size,
                                   block_pooling_type=granularity.block_pooling_type)
    for w in wrappers:
        if not isinstance(w, PruneLowMagnitude):
            raise ValueError(f"'{w.name}' is channel-pruned ({type(w).__name__}); IterativePruning prunes weights. "
                             "Start from the dense model or from one pruned with prune_low_magnitude.")
        if w.granularity != granularity:
            raise ValueError(f"'{w.layer.name}' is already pruned with {w.granularity!r}, but the driver was asked "
                             f"for {granularity!r}: pass the model's block_size and block_pooling_type, or start from "
                             "the dense model.")
    return model


def _progress_line(row, rounds, metric):
    test = row.get(f"test_{metric}")
    best = next(((k, v) for k, v in row.items() if k.startswith("best_") and k != "best_step"), (None, None))
    parts = [f"round {row['round']}/{rounds}", f"{row['weights_remaining']:.1f}% of weights remain"]
    if test is not None:
        parts.append(f"test {metric} {test:.4f}")
    if best[1] is not None:
        parts.append(f"{best[0].replace('_', ' ', 1)} {best[1]:.4f} at step {row['best_step']}")
    return "  ".join(parts) + f"  ({row['seconds']:.1f} s)"


def _differences(saved, current, prefix=""):
    """'key.subkey: checkpoint a, now b' for every leaf where two nested settings dicts differ."""
    lines = []
    for key in sorted(set(saved) | set(current)):
        old, new = saved.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            lines += _differences(old, new, f"{prefix}{key}.")
        elif old != new:
            lines.append(f"{prefix}{key}: checkpoint {old!r}, now {new!r}")
    return lines


def _jsonable(value):
    return json.loads(json.dumps(value, default=repr))


def plot_pruning_curves(curves, path, metric="test_accuracy"):
    """Plots `metric` against the % of weights remaining (log x-axis), one line per label.

    Args:
        curves: `{label: [rows of one run, rows of another seed, ...]}`, rows as returned by
            `IterativePruning.run()`. Several runs give the mean and a min-max band.
        path: the PNG to write.

    Example:

    >>> plot_pruning_curves({"weight rewinding": [rows_seed0, rows_seed1]}, "curves.png")
    """
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for label, runs in curves.items():
        runs = [[r for r in rows if r.get(metric) is not None] for rows in runs]
        length = min(len(rows) for rows in runs)
        if not length:
            continue
        x = np.array([r["weights_remaining"] for r in runs[0][:length]])
        y = np.array([[r[metric] for r in rows[:length]] for rows in runs])
        (line,) = axis.plot(x, y.mean(axis=0), marker="o", markersize=3, label=label)
        if len(runs) > 1:
            axis.fill_between(x, y.min(axis=0), y.max(axis=0), alpha=0.2, color=line.get_color())
    axis.set_xscale("log")
    low, high = axis.get_xlim()
    axis.set_xticks([t for t in (100, 50, 20, 10, 5, 2, 1, 0.5, 0.2, 0.1) if low <= t <= high])
    axis.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axis.invert_xaxis()
    axis.set_xlabel("% of weights remaining")
    axis.set_ylabel(metric.replace("_", " "))
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
