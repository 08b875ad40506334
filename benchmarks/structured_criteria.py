"""Which channels to prune: L2 magnitude vs BatchNorm scale vs Taylor vs group lasso, at the same FLOPs.

A CNN trained on the MNIST 5k subset (`tfprune.data.download_mnist()` fetches it) is channel-pruned from the same dense
weights with each criterion, by the same schedule (layer scope), so every pruned model has exactly the
same channel counts and FLOPs; group lasso adds its penalty (warmed up over the first epoch, two
strengths) to L2 pruning. Accuracy on the 10k test set after shrinking, for several seeds (mean and spread).

Run: `python benchmarks/structured_criteria.py [--seeds 2] [--penalties 1e-4 1e-3] [--quick]`.
Writes benchmarks/results/structured_criteria.json and structured_criteria.png.
"""

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfprune  # noqa: E402
from tfprune.data import load_mnist  # noqa: E402

RESULTS = Path(__file__).parent / "results"
BATCH = 64
SPARSITY = 0.5  # of every set of channels: about 25% of the FLOPs
L = keras.layers
CRITERIA = {
    "l2": {"importance": "l2"},
    "bn_scale": {"importance": "bn_scale"},
    "taylor": {"importance": "taylor"},
}


def cnn():
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        L.Conv2D(16, 3, use_bias=False), L.BatchNormalization(), L.ReLU(), L.MaxPooling2D(),
        L.Conv2D(32, 3, use_bias=False), L.BatchNormalization(), L.ReLU(), L.MaxPooling2D(),
        L.Conv2D(64, 3, use_bias=False), L.BatchNormalization(), L.ReLU(),
        L.GlobalAveragePooling2D(), L.Dense(10),
    ], name="criteria_cnn")


def compiled(model, learning_rate):
    model.compile(keras.optimizers.Adam(learning_rate), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))


def prune_with(dense, settings, x, y, epochs):
    steps = int(np.ceil(len(x) / BATCH))
    frequency = 20
    end = frequency * int(np.ceil(steps * max(1, (2 * epochs) // 3) / frequency))
    # Pruning begins after one epoch: Taylor needs recorded gradients, group lasso a warmed-up penalty.
    schedule = tfprune.PolynomialDecay(0.0, SPARSITY, begin_step=frequency * (steps // frequency), end_step=end,
                                       frequency=frequency)
    penalty_strength = settings.pop("group_lasso", None)
    if penalty_strength:
        settings["penalty"] = tfprune.GroupLasso(penalty_strength, warmup_steps=steps)
    pruned = compiled(tfprune.prune_channels(dense, schedule, **settings), 5e-4)
    pruned.fit(x, y, epochs=epochs, batch_size=BATCH, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    return tfprune.shrink(pruned, verbose=False)


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = result["accuracy"]
    names = list(table)
    means = [100 * table[n]["mean"] for n in names]
    spread = [[100 * (table[n]["mean"] - table[n]["min"]) for n in names],
              [100 * (table[n]["max"] - table[n]["mean"]) for n in names]]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.barh(names, means, xerr=spread, color=["gray"] + ["tab:blue"] * (len(names) - 1))
    ax.set(xlabel="test accuracy (%), mean and range over seeds", xlim=(min(means) - 5, 100),
           title=f"Channel criteria at {table[names[1]]['flops_ratio']:.2f} of the FLOPs")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--penalties", type=float, nargs="+", default=[1e-4, 1e-3], help="group-lasso strengths")
    parser.add_argument("--quick", action="store_true", help="fewer epochs (a smoke run, not for figures)")
    args = parser.parse_args()
    dense_epochs, prune_epochs = (2, 3) if args.quick else (10, 8)
    started = time.time()
    (x, y), (x_test, y_test) = load_mnist()
    x, x_test = x[..., None], x_test[..., None]
    criteria = {**CRITERIA, **{f"group_lasso {strength:g} + l2": {"importance": "l2", "group_lasso": strength}
                               for strength in args.penalties}}
    runs = {name: [] for name in ["dense", *criteria]}
    flops = {}
    for seed in range(args.seeds):
        keras.utils.set_random_seed(seed)
        dense = compiled(cnn(), 1e-3)
        dense.fit(x, y, epochs=dense_epochs, batch_size=BATCH, verbose=0)
        runs["dense"].append(accuracy(dense, x_test, y_test))
        flops["dense"] = tfprune.model_cost(dense).flops
        for criterion, settings in criteria.items():
            keras.utils.set_random_seed(seed)
            small = prune_with(dense, dict(settings), x, y, prune_epochs)
            runs[criterion].append(accuracy(small, x_test, y_test))
            flops[criterion] = tfprune.model_cost(small).flops
            print(f"seed {seed} {criterion:<25} accuracy {runs[criterion][-1]:.4f}  "
                  f"FLOPs {flops[criterion] / flops['dense']:.3f}", flush=True)
    table = {name: {"mean": statistics.fmean(values), "min": min(values), "max": max(values), "runs": values,
                    "flops_ratio": flops[name] / flops["dense"]} for name, values in runs.items()}
    print(f"\n{'criterion':<26}{'FLOPs':>7}{'mean acc':>10}{'min':>8}{'max':>8}")
    for name, row in table.items():
        print(f"{name:<26}{row['flops_ratio']:>7.3f}{row['mean']:>10.4f}{row['min']:>8.4f}{row['max']:>8.4f}")
    result = {
        "benchmark": "structured_criteria",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "settings": {"seeds": args.seeds, "dense_epochs": dense_epochs, "pruning_epochs": prune_epochs,
                     "channel_sparsity": SPARSITY, "scope": "layer", "group_lasso_strengths": args.penalties,
                     "quick": args.quick},
        "accuracy": table,
        "seconds": time.time() - started,
    }
    RESULTS.mkdir(exist_ok=True)
    name = "structured_criteria_quick" if args.quick else "structured_criteria"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, RESULTS / f"{name}.png")


if __name__ == "__main__":
    main()
