"""L0 gates on LeNet-300-100 (MNIST 5k subset): the units that survive, test error and FLOPs, per strength.

Louizos, Welling & Kingma (2018) report 784-300-100 -> 219-214-100 at about 1.4% error on full MNIST
(60k images, 200 epochs; they also gate the 784 input pixels, which tfprune keeps as model inputs).
Here: the 5k training subset, test on the official 10k test set, hard-concrete gates on the two hidden
layers' units (`prune_channels(model, None, penalty=tfprune.L0Gates(strength))`), Adam, then
`fold_gates` and `shrink`. Compare the shape of the result, not the numbers.

Run: `python benchmarks/l0_lenet.py [--epochs 60] [--strengths 1e-3 3e-3 1e-2]`.
Writes benchmarks/results/l0_lenet.json and l0_lenet.png.
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfprune  # noqa: E402
from tfprune.data import load_mnist  # noqa: E402

RESULTS = Path(__file__).parent / "results"
BATCH = 100
L = keras.layers


def lenet():
    return keras.Sequential([keras.Input((784,)), L.Dense(300, activation="relu", name="fc1"),
                             L.Dense(100, activation="relu", name="fc2"), L.Dense(10, name="out")])


def error(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0), -1) != y))


def compiled(model, learning_rate):
    model.compile(keras.optimizers.Adam(learning_rate), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([r["flops_ratio"] for r in rows], [100 * r["test_error"] for r in rows], "o-")
    for r in rows:
        label = "dense" if not r["strength"] else f"{r['strength']:g}: 784-{r['units'][0]}-{r['units'][1]}"
        ax.annotate(label, (r["flops_ratio"], 100 * r["test_error"]), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")
    ax.set(xlabel="FLOPs, shrunk / dense", ylabel="test error (%)",
           title="L0 gates on LeNet-300-100 (MNIST 5k subset)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--strengths", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2])
    args = parser.parse_args()
    started = time.time()
    (x, y), (x_test, y_test) = load_mnist()
    x, x_test = x.reshape(-1, 784), x_test.reshape(-1, 784)
    keras.utils.set_random_seed(0)
    dense = compiled(lenet(), args.learning_rate)
    dense.fit(x, y, epochs=args.epochs, batch_size=BATCH, verbose=0)
    dense_flops = tfprune.model_cost(dense).flops
    rows = [{"strength": 0.0, "units": [300, 100], "test_error": error(dense, x_test, y_test), "flops_ratio": 1.0}]
    print(f"dense 784-300-100: test error {rows[0]['test_error']:.2%}", flush=True)
    for strength in args.strengths:
        keras.utils.set_random_seed(0)
        penalty = tfprune.L0Gates(strength, warmup_steps=int(np.ceil(len(x) / BATCH)), initial_drop_rate=0.3)
        gated = compiled(tfprune.prune_channels(lenet(), None, penalty=penalty), args.learning_rate)
        gated.fit(x, y, epochs=args.epochs, batch_size=BATCH, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
        tfprune.fold_gates(gated)
        small = tfprune.shrink(gated, verbose=False)
        units = [small.get_layer(name).units for name in ("fc1", "fc2")]
        row = {"strength": strength, "units": units, "test_error": error(small, x_test, y_test),
               "flops_ratio": tfprune.model_cost(small).flops / dense_flops,
               "params": tfprune.model_cost(small).params}
        rows.append(row)
        print(f"L0 strength {strength:g}: 784-{units[0]}-{units[1]}, test error {row['test_error']:.2%}, "
              f"FLOPs {row['flops_ratio']:.3f} of dense", flush=True)
    result = {
        "benchmark": "l0_lenet",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "settings": {"epochs": args.epochs, "batch_size": BATCH, "learning_rate": args.learning_rate,
                     "initial_drop_rate": 0.3, "warmup": "one epoch", "data": "MNIST 5k train subset, 10k test"},
        "paper_reference": {"units": [219, 214, 100], "test_error": 0.014,
                            "note": "full MNIST, 200 epochs, input pixels gated too (784 -> 219)"},
        "rows": rows,
        "seconds": time.time() - started,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "l0_lenet.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, RESULTS / "l0_lenet.png")


if __name__ == "__main__":
    main()
