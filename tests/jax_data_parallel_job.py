"""Magnitude pruning in `model.fit` under JAX, with or without `keras.distribution.DataParallel`, run by
tests/test_jax_data_parallel.py in a process of its own: `python jax_data_parallel_job.py OUT.npz [data_parallel]`.

The caller sets XLA_FLAGS=--xla_force_host_platform_device_count=N for N CPU devices. The npz holds the masks and
kernels after every epoch (`<path>/mask/<epoch>`, `<path>/kernel/<epoch>`) and a JSON `summary`: the sparsity
report at the end, where the variables and batches lived, and `smallest_rank_gap`, the smallest distance between
the largest pruned and the smallest kept magnitude at any mask update (how far the masks were from a tie).
"""

import json
import os
import sys

os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfprune  # noqa: E402
from tfprune.apply.wrapper import pruning_wrappers  # noqa: E402
from tfprune.criteria.importance import MAGNITUDE  # noqa: E402
from tfprune.weight_pruning import layer_masks  # noqa: E402

BATCH, EPOCHS, SPARSITY = 32, 3, 0.75
rng = np.random.default_rng(0)
x = rng.normal(size=(320, 16)).astype("float32")
y = (x[:, :4].sum(axis=1) > 0).astype("int32") + 2 * (x[:, 4:8].sum(axis=1) > 0)
END_STEP = len(x) // BATCH * EPOCHS  # the last batch reaches the target

out, data_parallel = sys.argv[1], "data_parallel" in sys.argv[2:]
if data_parallel:
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=keras.distribution.list_devices()))


class RankGaps(keras.callbacks.Callback):
    """Before each mask update (put it ahead of UpdatePruningStep): smallest kept - largest pruned magnitude."""

    def __init__(self):
        super().__init__()
        self.step, self.gaps = 0, []

    def on_train_batch_begin(self, batch, logs=None):
        self.step += 1
        for wrapper in pruning_wrappers(self.model):
            should_update, sparsity = wrapper.pruning_schedule.decision(self.step)
            if should_update:
                self.model.jax_state_sync()  # the weights the update is about to rank
                kernels = [keras.ops.convert_to_numpy(k) for k in wrapper.pruned_weights]
                scores = [MAGNITUDE.entry_scores(k) for k in kernels]  # what the controller ranks
                for kernel, mask in zip(kernels, layer_masks(wrapper, sparsity, scores)):
                    magnitude = np.abs(kernel)
                    if 0 < mask.sum() < mask.size:
                        self.gaps.append(float(magnitude[mask].min() - magnitude[~mask].max()))


class Record(keras.callbacks.Callback):
    """Masks and kernels after every epoch (fit has synced its state into the variables then), and how the
    compiled train step saw its batches: rows per device and devices (put it after UpdatePruningStep)."""

    def __init__(self):
        super().__init__()
        self.arrays, self.batch_sharding = {}, []

    def on_train_begin(self, logs=None):
        masked_step = self.model.train_step  # UpdatePruningStep's

        def inspected_step(state, data):
            inputs = data[0]
            jax.debug.inspect_array_sharding(inputs, callback=lambda sharding: self.batch_sharding.append(
                (sharding.shard_shape(inputs.shape)[0], len(sharding.device_set))))
            return masked_step(state, data)

        self.model.train_step = inspected_step
        self.model.make_train_function(force=True)

    def on_epoch_end(self, epoch, logs=None):
        for wrapper in pruning_wrappers(self.model):
            for kernel, mask in zip(wrapper.pruned_weights, wrapper.masks):
                self.arrays[f"{kernel.path}/kernel/{epoch}"] = keras.ops.convert_to_numpy(kernel)
                self.arrays[f"{mask.path}/mask/{epoch}"] = keras.ops.convert_to_numpy(mask)


keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(64, activation="relu", name="hidden"),
                          keras.layers.Dense(32, activation="relu", name="middle"), keras.layers.Dense(4, name="out")])
model = tfprune.prune_low_magnitude(model, tfprune.PolynomialDecay(0.0, SPARSITY, 0, END_STEP, frequency=5))
model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
gaps, record = RankGaps(), Record()
model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
          callbacks=[gaps, tfprune.UpdatePruningStep(), record])

wrappers = pruning_wrappers(model)
masks, kernels = [m for w in wrappers for m in w.masks], [k for w in wrappers for k in w.pruned_weights]
summary = {
    "devices": jax.device_count(),
    "distribution": type(keras.distribution.distribution()).__name__,
    "kernel_devices": sorted({len(k.value.sharding.device_set) for k in kernels}),
    "mask_devices": sorted({len(m.value.sharding.device_set) for m in masks}),
    "masks_and_kernels_replicated": all(v.value.sharding.is_fully_replicated for v in (*masks, *kernels)),
    "batch_rows_per_device": sorted({rows for rows, _ in record.batch_sharding}),
    "batch_devices": sorted({devices for _, devices in record.batch_sharding}),
    "step": tfprune.PruningController(model).step,
    "mask_updates_ranked": len(gaps.gaps),
    "smallest_rank_gap": min(gaps.gaps),
    **{key: tfprune.sparsity_report(model)["total"][key] for key in ("sparsity", "nonzero_under_mask")},
}
np.savez(out, summary=json.dumps(summary), **record.arrays)
