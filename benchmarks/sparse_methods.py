"""Pruning before, during and after training, at the same training budget: which method keeps accuracy?

Models: LeNet-300-100 and a small CNN (two 3x3 convolutions, 16 and 32 filters, max pooling, Dense 128, Dense
10), on MNIST (the 5k training subset, the 10k test set). Every method trains for the same number of
epochs with SGD (momentum 0.9) and spreads its sparsity over the weights by ERK (`--distribution`):

- dense: no pruning;
- GMP: gradual magnitude pruning (Zhu & Gupta 2017), PolynomialDecay from 0 to the target over the first
  75% of the steps, masks every 50 steps;
- one-shot + fine-tune: dense for half the epochs, magnitude pruning to the target at once, fine-tuned
  for the other half; OBD and OBS: the same with Optimal Brain Damage (`prune_once(importance="obd")`, the
  empirical Fisher of the first 1,024 training images) or layer-wise Optimal Brain Surgeon (`importance="obs"`,
  from the layers' inputs on those images, with its compensating update);
- LAMP: GMP ranked by LAMP scores with one global threshold (the distribution is LAMP's own);
- SNIP, GraSP: `tfprune.snip` / `tfprune.grasp` on the first 1,024 training images, masks fixed;
- random (static): random masks at initialization, fixed (`sparse_training(method="static")`);
- SET, RigL: `sparse_training(method=...)`, update_every 100, drop_fraction 0.3 (cosine), end at 75%.

Each at 80, 90, 95 and 98% sparsity over `--seeds` seeds (the same initial weights for every method of a
seed). Also the time of a training step of SET and RigL relative to dense `fit`, measured in the same run
(the wall time of each method's `fit`, excluding its first epoch, which traces), and the inference FLOPs
left at each sparsity (2 x the unpruned multiply-accumulates of the Dense and Conv layers).

Run: `python benchmarks/sparse_methods.py [--models lenet cnn] [--seeds 3] [--epochs 20]
[--sparsities 0.8 0.9 0.95 0.98] [--methods ...]`. Writes benchmarks/results/sparse_methods.json (a run of
some models or methods keeps the others' results) and sparse_methods.png. About 20 min for LeNet and
60 min for the CNN with the defaults on 2 cores.
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
from tfprune.files import atomic_write  # noqa: E402
from tfprune.selection.distributions import scope_of  # noqa: E402

RESULTS = Path(__file__).parent / "results"
L = keras.layers
BATCH = 64
SCORING_IMAGES = 1024
METHODS = ("dense", "gmp", "one-shot", "snip", "grasp", "random", "set", "rigl", "obd", "obs", "lamp")


def lenet_300_100():
    return keras.Sequential([keras.Input((784,)), L.Dense(300, activation="relu"), L.Dense(100, activation="relu"),
                             L.Dense(10)], name="lenet_300_100")


def small_cnn():
    return keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(16, 3, activation="relu"), L.MaxPooling2D(),
                             L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(), L.Flatten(),
                             L.Dense(128, activation="relu"), L.Dense(10)], name="small_cnn")


MODELS = {"lenet": (lenet_300_100, (784,)), "cnn": (small_cnn, (28, 28, 1))}


def compiled(model, learning_rate):
    model.compile(keras.optimizers.SGD(learning_rate, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


class EpochTimes(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def train(model, x, y, epochs, learning_rate, pruned=True):
    """Fits `model` (compiled here); returns the seconds per epoch after the first."""
    timer = EpochTimes()
    callbacks = [tfprune.UpdatePruningStep(), timer] if pruned else [timer]
    compiled(model, learning_rate).fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=callbacks)
    return float(np.median(timer.times[1:])) if len(timer.times) > 1 else None


def run_method(method, build, sparsity, x, y, args):
    """The trained model of `method` at `sparsity` and its seconds per epoch."""
    steps = args.epochs * int(np.ceil(len(x) / BATCH))
    end = int(0.75 * steps)
    model = build()
    distribution = args.distribution
    scope = scope_of(distribution)
    if method == "dense":
        return model, train(model, x, y, args.epochs, args.learning_rate, pruned=False)
    if method == "gmp":
        schedule = tfprune.PolynomialDecay(0.0, sparsity, begin_step=0, end_step=end - end % 50, frequency=50)
        pruned = tfprune.prune_low_magnitude(model, schedule, scope=scope)
        return pruned, train(pruned, x, y, args.epochs, args.learning_rate)
    if method == "lamp":
        schedule = tfprune.PolynomialDecay(0.0, sparsity, begin_step=0, end_step=end - end % 50, frequency=50)
        pruned = tfprune.prune_low_magnitude(model, schedule, scope="global", importance="lamp")
        return pruned, train(pruned, x, y, args.epochs, args.learning_rate)
    if method in ("one-shot", "obd", "obs"):
        train(model, x, y, args.epochs // 2, args.learning_rate, pruned=False)
        data = (x[:SCORING_IMAGES], y[:SCORING_IMAGES]) if method != "one-shot" else None
        pruned = tfprune.prune_once(model, sparsity, {"one-shot": "magnitude"}.get(method, method), data=data,
                                    distribution=distribution)
        return pruned, train(pruned, x, y, args.epochs - args.epochs // 2, args.learning_rate)
    if method in ("snip", "grasp"):
        scorer = tfprune.snip if method == "snip" else tfprune.grasp
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        pruned = scorer(model, (x[:SCORING_IMAGES], y[:SCORING_IMAGES]), sparsity, distribution=distribution,
                        loss=loss)
        return pruned, train(pruned, x, y, args.epochs, args.learning_rate)
    sparse = tfprune.sparse_training(model, sparsity, method={"random": "static"}.get(method, method),
                                     distribution=distribution, update_every=100, drop_fraction=0.3, end_step=end,
                                     seed=args.seed)
    return sparse, train(sparse, x, y, args.epochs, args.learning_rate)


def inference_flops(model, input_shape):
    """2 x the multiply-accumulates of the Dense and Conv layers that are not pruned, for one example."""
    plain = tfprune.strip_pruning(model) if _pruned(model) else model
    total, shape = 0, (1, *input_shape)
    for layer in plain.layers:
        out = layer.compute_output_shape(shape)
        if isinstance(layer, (L.Dense, L.Conv2D)):
            nonzero = int(np.count_nonzero(keras.ops.convert_to_numpy(layer.kernel)))
            positions = int(np.prod(out[1:-1])) if isinstance(layer, L.Conv2D) else 1
            total += 2 * nonzero * positions
        shape = out
    return total


def _pruned(model):
    return any(isinstance(layer, tfprune.PruneLowMagnitude) for layer in model.layers)


def test_accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, batch_size=1000, verbose=0), -1) == y))


def summarize(runs):
    """{model: {method: {sparsity: {mean, std, n}}}} of test accuracy, and the step-time ratios to dense."""
    table, times = {}, {}
    for run in runs:
        cell = table.setdefault(run["model"], {}).setdefault(run["method"], {})
        cell.setdefault(str(run["sparsity"]), []).append(run["accuracy"])
    for model, methods in table.items():
        for method, by_sparsity in methods.items():
            methods[method] = {s: {"mean": float(np.mean(a)), "std": float(np.std(a)), "n": len(a)}
                               for s, a in by_sparsity.items()}
    for model in table:
        dense = [r["seconds_per_epoch"] for r in runs if r["model"] == model and r["method"] == "dense"]
        if not dense:
            continue
        for method in ("gmp", "set", "rigl", "random"):
            mine = [r["seconds_per_epoch"] for r in runs if r["model"] == model and r["method"] == method]
            if mine:
                times.setdefault(model, {})[method] = float(np.median(mine) / np.median(dense))
    return table, times


def plot(table, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(table), figsize=(6.5 * len(table), 4.5), squeeze=False)
    for axis, (model, methods) in zip(axes[0], table.items()):
        dense = methods.get("dense", {}).get("0.0")
        for method, by_sparsity in methods.items():
            if method == "dense":
                continue
            sparsities = sorted(by_sparsity, key=float)
            means = [by_sparsity[s]["mean"] for s in sparsities]
            stds = [by_sparsity[s]["std"] for s in sparsities]
            axis.errorbar([float(s) for s in sparsities], means, yerr=stds, marker="o", capsize=3, label=method)
        if dense:
            axis.axhline(dense["mean"], color="black", linestyle="--", label="dense")
            axis.set_ylim(dense["mean"] - 0.12, dense["mean"] + 0.01)  # collapsed runs (GraSP) fall off the plot
        axis.set_title(f"{model} (mean ± std over seeds; below the frame: see the JSON)")
        axis.set_xlabel("sparsity")
        axis.set_ylabel("test accuracy (10k)")
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--sparsities", nargs="+", type=float, default=[0.8, 0.9, 0.95, 0.98])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--learning-rate", type=float, default=0.02)
    parser.add_argument("--distribution", default="erk", choices=["erk", "uniform", "global"])
    args = parser.parse_args()
    (x_train, y_train), (x_test, y_test) = load_mnist()
    path = RESULTS / "sparse_methods.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    ran = {(m, method) for m in args.models for method in args.methods}
    runs = [r for r in previous.get("runs", []) if (r["model"], r["method"]) not in ran]
    started = time.time()
    for name in args.models:
        build, input_shape = MODELS[name]
        x, xt = x_train.reshape(-1, *input_shape), x_test.reshape(-1, *input_shape)
        for seed in range(args.seeds):
            args.seed = seed
            for method in args.methods:
                for sparsity in ([0.0] if method == "dense" else args.sparsities):
                    keras.utils.set_random_seed(seed)  # the same initial weights and batches for every method
                    began = time.time()
                    model, seconds = run_method(method, build, sparsity, x, y_train, args)
                    run = {"model": name, "method": method, "sparsity": sparsity, "seed": seed,
                           "accuracy": test_accuracy(model, xt, y_test), "seconds_per_epoch": seconds,
                           "flops": inference_flops(model, input_shape),
                           "measured_sparsity": float(tfprune.sparsity_report(model)["total"]["sparsity"])
                           if method != "dense" else 0.0}
                    runs.append(run)
                    print(f"{name:6s} seed {seed} {method:9s} {sparsity:.2f}: accuracy {run['accuracy']:.4f} "
                          f"(sparsity {run['measured_sparsity']:.3f}, {time.time() - began:.0f} s)", flush=True)
                    keras.backend.clear_session()
    table, times = summarize(runs)
    dense_flops = {r["model"]: r["flops"] for r in runs if r["method"] == "dense"}
    flops = {}
    for r in runs:
        if r["method"] in ("set", "rigl") and r["model"] in dense_flops:
            flops.setdefault(r["model"], {})[str(r["sparsity"])] = r["flops"] / dense_flops[r["model"]]
    result = {
        "setup": {"data": "MNIST 5k training subset, 10k test", "optimizer": f"SGD momentum 0.9, "
                  f"learning rate {args.learning_rate}", "batch": BATCH, "epochs": args.epochs,
                  "distribution": args.distribution, "scoring_images": SCORING_IMAGES,
                  "dynamic": "update_every 100, drop_fraction 0.3 cosine, end at 75% of steps",
                  "gmp": "PolynomialDecay 0 -> target over 75% of steps, frequency 50",
                  "machine": platform.processor() or platform.machine(), "keras_backend": keras.backend.backend(),
                  "minutes_last_run": round((time.time() - started) / 60, 1)},
        "accuracy": table, "step_time_vs_dense": times, "flops_left_by_rigl_masks": flops, "runs": runs,
    }
    RESULTS.mkdir(exist_ok=True)
    atomic_write(path, json.dumps(result, indent=1).encode())
    plot(table, RESULTS / "sparse_methods.png")
    for model, methods in table.items():
        print(f"\n{model}: mean test accuracy (std) over seeds")
        for method, by_sparsity in methods.items():
            cells = "  ".join(f"{float(s):.2f}: {c['mean']:.4f} ({c['std']:.4f})" for s, c in
                              sorted(by_sparsity.items(), key=lambda item: float(item[0])))
            print(f"  {method:9s} {cells}")
    print("\nstep time vs dense fit:", json.dumps(times))


if __name__ == "__main__":
    main()
