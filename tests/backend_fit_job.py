"""`model.fit` of pruned models under another Keras backend, run by tests/test_backends.py in a process of its own:
`python backend_fit_job.py OUT.json DIR BACKEND` (jax or torch). Each case reports what the sparsity report says
at the end of training, read before UpdatePruningStep's on_train_end (which zeroes pruned weights again)."""

import json
import os
import sys

os.environ["KERAS_BACKEND"] = sys.argv[3]

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfprune  # noqa: E402
from tfprune.backend_calls import host_value  # noqa: E402

L = keras.layers
rng = np.random.default_rng(0)
x, y = rng.normal(size=(320, 16)).astype("float32"), rng.integers(0, 4, 320)


class ReportAtEnd(keras.callbacks.Callback):
    """Reads the report when training ends, before the callbacks after it run."""

    def on_train_end(self, logs=None):
        self.total = tfprune.sparsity_report(self.model)["total"]


def mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((16,)), L.Dense(32, activation="relu", name="hidden"),
                             L.BatchNormalization(name="norm"), L.Dense(4, name="out")])


def fit(model, epochs=2):
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    report = ReportAtEnd()
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, callbacks=[report, tfprune.UpdatePruningStep()])
    return {"sparsity": report.total["sparsity"], "nonzero_under_mask": report.total["nonzero_under_mask"],
            "step": tfprune.PruningController(model).step}


results = {"backend": keras.backend.backend()}
schedule = tfprune.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=20, frequency=5)
results["layer"] = fit(tfprune.prune_low_magnitude(mlp(), schedule))
results["global"] = fit(tfprune.prune_low_magnitude(mlp(), schedule, scope="global"))
results["2:4"] = fit(tfprune.prune_low_magnitude(mlp(), sparsity_m_by_n=(2, 4)))

channels = tfprune.prune_channels(mlp(), tfprune.ConstantSparsity(0.5, 0, frequency=5))
channels.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
channels.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
small = tfprune.shrink(channels, verbose=False)
results["channels"] = {"hidden_units": small.get_layer("hidden").units,
                       "max_output_difference": float(np.max(np.abs(small.predict(x, verbose=0)
                                                                     - channels.predict(x, verbose=0))))}

saved = tfprune.prune_low_magnitude(mlp(), tfprune.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=40, frequency=5))
fit(saved, epochs=2)  # steps 1..20
path = os.path.join(sys.argv[2], "pruned.keras")
saved.save(path)
resumed = tfprune.load_model(path)
results["resumed"] = {"step_loaded": tfprune.PruningController(resumed).step, **fit(resumed, epochs=2)}

rewound = tfprune.prune_low_magnitude(mlp(), schedule)
initial = host_value(rewound.get_layer("prune_low_magnitude_hidden").layer.kernel)
rewound.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
rewound.fit(x, y, batch_size=32, epochs=2, verbose=0,  # the last mask update is at the last step, 20
            callbacks=[tfprune.UpdatePruningStep(), tfprune.WeightRewinding(rewind_step=0, verbose=0),
                       tfprune.PruningSummaries(os.path.join(sys.argv[2], "logs"))])
hidden = rewound.get_layer("prune_low_magnitude_hidden")
results["weight_rewinding"] = {
    "kernel_is_initial_times_mask": bool(np.array_equal(host_value(hidden.layer.kernel),
                                                        initial * host_value(hidden.masks[0]))),
    "sparsity": tfprune.sparsity_report(rewound)["total"]["sparsity"],
    "summaries_written": len(os.listdir(os.path.join(sys.argv[2], "logs", "pruning"))),
}

keras.utils.set_random_seed(0)  # Taylor: unit 3 has the largest weights, but the loss does not read it
ignored = keras.Sequential([keras.Input((16,)), L.Dense(8, activation="relu", name="hidden"), L.Dense(4, name="out")])
kernel, bias = ignored.get_layer("hidden").get_weights()
ignored.get_layer("hidden").set_weights([kernel * np.where(np.arange(8) == 3, 10, 1), bias])
kernel, bias = ignored.get_layer("out").get_weights()
ignored.get_layer("out").set_weights([kernel * (np.arange(8) != 3)[:, None], bias])
taylor = tfprune.prune_channels(ignored, tfprune.PolynomialDecay(0.0, 0.125, begin_step=0, end_step=4, frequency=4),
                                importance="taylor")
taylor.compile(keras.optimizers.SGD(1e-6), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
taylor.fit(x[:64], y[:64], batch_size=16, epochs=1, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
results["taylor"] = {"pruned_hidden_units": np.flatnonzero(taylor.get_layer("prune_channels_hidden")
                                                           .pruned("output")).tolist()}

import keras_hub  # noqa: E402 - only this case needs it

keras.utils.set_random_seed(0)
bert = keras_hub.models.BertBackbone(vocabulary_size=100, num_layers=1, num_heads=2, hidden_dim=16,
                                     intermediate_dim=32, max_sequence_length=8)
tokens = {"token_ids": rng.integers(0, 100, (32, 8)).astype("int32"), "segment_ids": np.zeros((32, 8), "int32"),
          "padding_mask": np.ones((32, 8), "int32")}
pruned_bert = tfprune.prune_low_magnitude(bert, tfprune.ConstantSparsity(0.8, 0, frequency=1))
pruned_bert.compile("adam", "mse")
targets = keras.tree.map_structure(np.zeros_like, pruned_bert.predict(tokens, verbose=0))
report = ReportAtEnd()
pruned_bert.fit(tokens, targets, batch_size=8, verbose=0, callbacks=[report, tfprune.UpdatePruningStep()])
results["keras_hub_bert"] = {"sparsity": report.total["sparsity"], "nonzero_under_mask": report.total["nonzero_under_mask"]}

with open(sys.argv[1], "w") as file:
    json.dump(results, file)
