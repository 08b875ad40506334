"""One worker of tests/test_multi_worker.py: prunes a small MLP under MultiWorkerMirroredStrategy.

Run as `python multi_worker_job.py OUT_DIR` with `TF_CONFIG` naming this worker. It fits one epoch,
saves a `.keras` checkpoint (the chief to OUT_DIR/checkpoint.keras, other workers to a temporary
path they delete, as TF's multi-worker saving guide asks), fits a second epoch, and writes its masks
and pruned weights after each epoch to OUT_DIR/worker<index>_step<step>.npz. The test imports the
constants and `training_data` from here.
"""

import json
import os
import shutil
import sys
import warnings

import keras
import numpy as np
import tensorflow as tf

import tfprune

SAMPLES, FEATURES, CLASSES = 256, 16, 4
GLOBAL_BATCH = 32  # split across the two workers: 16 examples each per step
STEPS_PER_EPOCH = SAMPLES // GLOBAL_BATCH  # 8
SCHEDULE = tfprune.PolynomialDecay(0.0, 0.75, 0, 2 * STEPS_PER_EPOCH, frequency=4)  # final sparsity at step 16


def reduce_each_value(strategy):
    """Makes `strategy.reduce` reduce nested values one by one, and scalars whatever the `axis`.

    Keras 3's `fit` needs both under MultiWorkerMirroredStrategy with more than one worker, pruned
    or not (keras-team/keras#20585): it reduces a whole (x, y) batch in one call, which
    `CollectiveAllReduceExtended._reduce_to` does not take apart as MirroredStrategy's does
    ("Attempt to convert a value (PerReplica...) to a Tensor"), and it averages scalar losses with
    `axis=0` (tensorflow/tensorflow#72388: "Invalid reduction dimension 0 for input with 0 dimensions").
    """
    reduce_one = strategy.reduce

    def reduce(reduce_op, value, axis=None):
        def reduce_leaf(leaf):
            rank = strategy.experimental_local_results(leaf)[0].shape.rank
            return reduce_one(reduce_op, leaf, axis=axis if rank else None)

        return tf.nest.map_structure(reduce_leaf, value)

    strategy.reduce = reduce
    return strategy


def training_data():
    """The same fixed examples on every worker: a linear rule on seeded Gaussian inputs."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(SAMPLES, FEATURES)).astype("float32")
    y = np.argmax(x @ rng.normal(size=(FEATURES, CLASSES)), axis=-1).astype("int64")
    return x, y


def sharded_dataset(x, y):
    """Global batches in a fixed order; DATA auto-sharding gives each worker its half of every batch.

    Keras shards numpy inputs by DATA too, but `fit` shuffles them unless `shuffle=False`, and the
    workers' orders (hence their halves) agree only if they are seeded alike. Here: no shuffle.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH, drop_remainder=True).with_options(options)


def is_chief(task):
    return task["type"] == "chief" or (task["type"] == "worker" and task["index"] == 0)


def write_state(model, path):
    """Masks, pruned weights and the pruning step of this worker's copy of `model`."""
    arrays = {}
    controller = tfprune.PruningController(model)
    for wrapper in controller.wrappers:
        for weight, mask in zip(wrapper.pruned_weights, wrapper.masks):
            arrays[f"mask:{mask.path}"] = mask.numpy()
            arrays[f"weight:{weight.path}"] = weight.numpy()
    arrays["step"] = np.asarray(controller.step)
    np.savez(path, **arrays)


def save_checkpoint(model, out_dir, task):
    """Every worker saves (saving may read synchronized variables); only the chief's file is kept."""
    if is_chief(task):
        model.save(os.path.join(out_dir, "checkpoint.keras"))
        return
    temporary_dir = os.path.join(out_dir, f"worker{task['index']}_tmp")
    os.makedirs(temporary_dir, exist_ok=True)
    model.save(os.path.join(temporary_dir, "checkpoint.keras"))
    shutil.rmtree(temporary_dir)


def main(out_dir):
    # Before any other TensorFlow op runs.
    strategy = reduce_each_value(tf.distribute.MultiWorkerMirroredStrategy())
    task = json.loads(os.environ["TF_CONFIG"])["task"]
    keras.utils.set_random_seed(task["index"])  # different seeds: the strategy copies the chief's initial weights
    x, y = training_data()
    with strategy.scope():
        model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(32, activation="relu"),
                                  keras.layers.Dense(CLASSES)])
        pruned = tfprune.prune_low_magnitude(model, SCHEDULE)
        pruned.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    dataset = sharded_dataset(x, y)
    with warnings.catch_warnings():  # the first epoch stops mid-schedule on purpose
        warnings.filterwarnings("ignore", message="Training ends at step")
        pruned.fit(dataset, epochs=1, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    write_state(pruned, os.path.join(out_dir, f"worker{task['index']}_step{STEPS_PER_EPOCH}.npz"))
    save_checkpoint(pruned, out_dir, task)
    pruned.fit(dataset, epochs=1, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    write_state(pruned, os.path.join(out_dir, f"worker{task['index']}_step{2 * STEPS_PER_EPOCH}.npz"))
    print("WORKER_DONE", task["index"], strategy.num_replicas_in_sync)


if __name__ == "__main__":
    main(sys.argv[1])
