"""LearningRateRewinding in `model.fit` on the backend named by KERAS_BACKEND, run by tests/test_backends.py in a
process per backend: `python lr_rewinding_job.py OUT.npz`. Writes the final weights; the same run on TensorFlow, JAX
and torch must end with the same weights, which it cannot if one replays the learning rate and the other does not."""

import sys

import keras
import numpy as np

import tfprune

keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(1)])
rng = np.random.default_rng(0)
initial = [rng.normal(scale=0.5, size=w.shape).astype("float32") for w in model.get_weights()]
model.set_weights(initial)
x, y = rng.normal(size=(64, 8)).astype("float32"), rng.normal(size=(64, 1)).astype("float32")
pruned = tfprune.prune_low_magnitude(model, tfprune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=16,
                                                                    frequency=8))
# A rate that falls a hundredfold by step 8: replaying it from step 0 after each pruning event changes the weights.
schedule = keras.optimizers.schedules.PiecewiseConstantDecay([8], [0.1, 0.001])
pruned.compile(keras.optimizers.SGD(schedule), "mse")
pruned.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0,
           callbacks=[tfprune.UpdatePruningStep(), tfprune.LearningRateRewinding(rewind_step=0, verbose=0)])
np.savez(sys.argv[1], *tfprune.strip_pruning(pruned).get_weights(), backend=keras.backend.backend())
