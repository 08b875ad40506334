"""tfprune against tfmot itself (tensorflow-model-optimization on tf_keras, in a subprocess so that its
`TF_USE_LEGACY_KERAS=1` stays out of this process): the same weights, data and calls, the same masks.

N:M: tfmot computes N:M masks once, at step 1, whatever the schedule
(`pruning_impl.Pruning.conditional_mask_update`), so `prune_low_magnitude(model, sparsity_m_by_n=(2, 4))`
with its default `ConstantSparsity(0.5, 0)` (frequency 100) prunes 2:4 at the first batch of a 16-step run.
"""

import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

import tfprune
from tfprune import masks

STEPS, BATCH = 16, 4
SCHEDULES = {  # name: (tfmot's schedule, tfprune's), None for the default
    "default": None,
    "polynomial": ("PolynomialDecay(0.0, 0.8, 0, 16, frequency=4)", tfprune.PolynomialDecay(0.0, 0.8, 0, 16, frequency=4)),
}

TFMOT_SCRIPT = """
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np
import tf_keras as keras
from tensorflow_model_optimization.sparsity.keras import (PolynomialDecay, UpdatePruningStep, prune_low_magnitude,
                                                          strip_pruning)

data, schedules = np.load(sys.argv[1]), eval(sys.argv[2])
kernels = {}
for name, schedule in schedules.items():
    model = keras.Sequential([keras.Input((4, 4, 8)), keras.layers.Conv2D(8, 3), keras.layers.Flatten(),
                              keras.layers.Dense(4)])
    model.set_weights([data["conv_kernel"], data["conv_bias"], data["dense_kernel"], data["dense_bias"]])
    settings = {} if schedule is None else {"pruning_schedule": eval(schedule)}
    pruned = prune_low_magnitude(model, sparsity_m_by_n=(2, 4), **settings)
    pruned.compile(keras.optimizers.SGD(0.1), "mse")
    pruned.fit(data["x"], data["y"], batch_size=int(data["batch"]), shuffle=False, verbose=0,
               callbacks=[UpdatePruningStep()])
    stripped = strip_pruning(pruned)
    kernels[name + "/conv"], kernels[name + "/dense"] = stripped.layers[0].kernel.numpy(), stripped.layers[2].kernel.numpy()
np.savez(sys.argv[3], **kernels)
"""


def _model():
    return keras.Sequential([keras.Input((4, 4, 8)), keras.layers.Conv2D(8, 3), keras.layers.Flatten(),
                             keras.layers.Dense(4)])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(initial model, data, {name/layer: tfmot's kernel after the run}) for the same weights and data."""
    keras.utils.set_random_seed(0)
    model, rng = _model(), np.random.default_rng(0)
    x, y = rng.random((STEPS * BATCH, 4, 4, 8), dtype=np.float32), rng.random((STEPS * BATCH, 4), dtype=np.float32)
    folder = tmp_path_factory.mktemp("tfmot")
    conv, dense = model.layers[0], model.layers[2]
    np.savez(folder / "data.npz", x=x, y=y, batch=BATCH, conv_kernel=conv.kernel.numpy(), conv_bias=conv.bias.numpy(),
             dense_kernel=dense.kernel.numpy(), dense_bias=dense.bias.numpy())
    tfmot_schedules = {name: None if both is None else both[0] for name, both in SCHEDULES.items()}
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", TFMOT_SCRIPT, str(folder / "data.npz"), repr(tfmot_schedules),
                             str(folder / "tfmot.npz")], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return model, (x, y), dict(np.load(folder / "tfmot.npz"))


@pytest.mark.parametrize("name", SCHEDULES)
def test_m_by_n_prunes_the_same_weights_as_tfmot_in_a_short_run(run, name):
    model, (x, y), tfmot_kernels = run
    schedule = None if SCHEDULES[name] is None else SCHEDULES[name][1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the non-default schedule is ignored, and says so
        pruned = tfprune.prune_low_magnitude(model, schedule, sparsity_m_by_n=(2, 4))
    pruned.compile(keras.optimizers.SGD(0.1), "mse")
    pruned.fit(x, y, batch_size=BATCH, shuffle=False, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    stripped = tfprune.strip_pruning(pruned)
    for layer, index in (("conv", 0), ("dense", 2)):
        ours, theirs = stripped.layers[index].kernel.numpy(), tfmot_kernels[f"{name}/{layer}"]
        assert np.mean(theirs == 0) == 0.5, f"tfmot left {layer} at sparsity {np.mean(theirs == 0)}"
        np.testing.assert_array_equal(ours == 0, theirs == 0, err_msg=f"{name}: {layer} masks differ from tfmot's")


COUNT_SCRIPT = """
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np, tensorflow as tf
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_impl, pruning_schedule

counts = {}
for size, sparsity in eval(sys.argv[1]):
    weight = tf.Variable(np.arange(1, size + 1, dtype="float32").reshape(size, 1))
    pruning = pruning_impl.Pruning(
        training_step_fn=lambda: 1, pruning_vars=[(weight, tf.Variable(tf.ones_like(weight)), tf.Variable(0.0))],
        pruning_schedule=pruning_schedule.ConstantSparsity(sparsity, 0, frequency=1), block_size=(1, 1),
        block_pooling_type="AVG")
    counts[f"{size}/{sparsity}"] = int(size - np.sum(pruning._update_mask(weight)[1].numpy()))
print(counts)
"""


def test_the_number_of_weights_pruned_is_tfmots_also_at_exact_halves():
    cases = [(5, 0.5), (6, 0.5), (7, 0.5), (10, 0.25), (6, 0.25), (14, 0.75), (3, 0.5), (1000, 0.3), (784, 0.9)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", COUNT_SCRIPT, repr(cases)], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    theirs = eval(result.stdout.strip().splitlines()[-1])
    ours = {}
    for size, sparsity in cases:
        scores = np.arange(1, size + 1, dtype="float32").reshape(size, 1)
        keep = masks.threshold_masks([scores], sparsity, masks.Granularity())[0]
        ours[f"{size}/{sparsity}"] = int(size - keep.sum())
    assert ours == theirs
