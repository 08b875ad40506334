"""Training-step overhead of pruning: pruned `fit` time / dense `fit` time, under TensorFlow and JAX, tfprune vs tfmot.

LeNet-300-100 (784-300-100-10) and a small CNN on the MNIST 5k subset, batch 60, PolynomialDecay with
frequency 10 (tfprune's magnitude pruning also with frequency 100, which shows what its mask updates cost).
Measured for tfprune's magnitude pruning, tfmot's, and tfprune's channel pruning (`prune_channels`) with L2
and with Taylor importance (which records gradients in the backward pass), with L2 plus a group-lasso penalty,
and with L0 gates alone (no schedule). Dense and pruned epochs alternate in one process so that the ratio
holds on a noisy machine: each round fits a fresh dense model and a fresh pruned one per frequency (rotating
which goes first), drops the first (tracing) epoch of each fit and divides their median epoch times; the
reported ratio is the median over rounds. The ratio of process CPU time is reported too: on a shared VM it is
less sensitive to time stolen by neighbours than wall time is. tfmot runs on tf-keras (Keras 2), from the
`bench` extra; tfprune never imports it.

Each backend and framework runs in a process of its own (`--backends B --framework F`), as Keras picks its
backend when it is imported. tfmot runs under TensorFlow only (tf-keras).

Run: `make bench` or `python benchmarks/training_overhead.py [--rounds 8] [--epochs 3] [--backends jax]`.
Writes benchmarks/results/training_overhead.json: per backend, framework, model and frequency, and a table of
the ratios (`ratios`).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
BATCH = 60
DEFAULT_ROUNDS, DEFAULT_EPOCHS = 8, 3
BACKENDS = ("tensorflow", "jax")
FRAMEWORKS = ("tfprune", "tfmot", "channels_l2", "channels_taylor", "channels_group_lasso", "channels_l0",
              "tfprune_weight_rewinding")
TENSORFLOW_ONLY = ("tfmot",)  # tf-keras
ARCHITECTURES = ("lenet_300_100", "small_cnn")


def frequencies(framework):
    """Mask-update frequencies measured: magnitude pruning at two, to show the cost of an update; others at 10."""
    return (10, 100) if framework == "tfprune" else (10,)


def build(keras, arch):
    if arch == "lenet_300_100":
        return keras.Sequential(
            [
                keras.Input((784,)),
                keras.layers.Dense(300, activation="relu"),
                keras.layers.Dense(100, activation="relu"),
                keras.layers.Dense(10),
            ]
        )
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )


def epoch_times(keras, model, x, y, epochs, callbacks):
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.wall, self.cpu = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            times.append((time.perf_counter() - self.wall, time.process_time() - self.cpu))

    model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=[*callbacks, Timer()])
    return times[1:]  # the first epoch includes tracing


def measure(framework, rounds, epochs):
    """{architecture: dense epoch times and, per frequency, pruned epoch times and ratios}, on the current backend."""
    if framework == "tfmot":
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        import tensorflow_model_optimization as tfmot
        import tf_keras as keras

        prune, schedule_cls, callback = (
            tfmot.sparsity.keras.prune_low_magnitude,
            tfmot.sparsity.keras.PolynomialDecay,
            tfmot.sparsity.keras.UpdatePruningStep,
        )
    else:
        import keras

        import tfprune

        prune, schedule_cls, callback = tfprune.prune_low_magnitude, tfprune.PolynomialDecay, tfprune.UpdatePruningStep
        if framework.startswith("channels_"):
            settings = {"channels_l2": {}, "channels_taylor": {"importance": "taylor"},
                        "channels_group_lasso": {"penalty": tfprune.GroupLasso(1e-4, warmup_steps=100)},
                        }.get(framework)

            def prune(model, pruning_schedule):
                if settings is None:  # channels_l0: the gates alone
                    return tfprune.prune_channels(model, None, penalty=tfprune.L0Gates(1e-3))
                return tfprune.prune_channels(model, pruning_schedule, **settings)
    from tfprune.data import load_mnist

    def pruning_callbacks():
        if framework == "tfprune_weight_rewinding":  # the worst case: a rewind at every update, every 10 steps
            return [callback(), tfprune.WeightRewinding(rewind_step=0, verbose=0)]
        return [callback()]

    def compiled(model):
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    (x, y), _ = load_mnist()
    results = {}
    for arch in ARCHITECTURES:
        xs = x.reshape(-1, 784) if arch == "lenet_300_100" else x[..., None]
        steps = -(-len(xs) // BATCH)
        times = {"dense": []}  # per fit, its epoch (wall, cpu) times
        round_ratios = {frequency: [] for frequency in frequencies(framework)}
        for r in range(rounds):
            keras.utils.set_random_seed(r)
            fits = [("dense", compiled(build(keras, arch)), [])]
            for frequency in frequencies(framework):
                schedule = schedule_cls(0.0, 0.9, begin_step=0, end_step=steps * epochs, frequency=frequency)
                fits.append((frequency, compiled(prune(build(keras, arch), pruning_schedule=schedule)),
                             pruning_callbacks()))
            for label, model, callbacks in fits[r % len(fits):] + fits[:r % len(fits)]:  # rotate who goes first
                times.setdefault(label, []).append(epoch_times(keras, model, xs, y, epochs, callbacks))
            dense_median = statistics.median(wall for wall, _ in times["dense"][-1])
            for frequency, ratios in round_ratios.items():
                ratios.append(statistics.median(wall for wall, _ in times[frequency][-1]) / dense_median)

        def pooled_medians(label):  # (wall, cpu) medians over every measured epoch of every round
            epochs_all = [epoch for fit in times[label] for epoch in fit]
            return tuple(statistics.median(epoch[i] for epoch in epochs_all) for i in (0, 1))

        dense_s, dense_cpu = pooled_medians("dense")
        results[arch] = {"dense_epoch_s": dense_s, "dense_epoch_cpu_s": dense_cpu,
                         "epochs_measured": sum(len(fit) for fit in times["dense"])}
        for frequency, ratios in round_ratios.items():
            pruned_s, pruned_cpu = pooled_medians(frequency)
            ratio = statistics.median(ratios)
            results[arch][f"frequency_{frequency}"] = {
                "pruned_epoch_s": pruned_s, "ratio": ratio, "round_ratios": ratios,
                "pruned_epoch_cpu_s": pruned_cpu, "cpu_ratio": pruned_cpu / dense_cpu}
            print(f"{keras.backend.backend():10s} {framework:8s} {arch:14s} frequency {frequency:3d}: "
                  f"dense {dense_s:.3f}s/epoch  pruned {pruned_s:.3f}s/epoch  ratio {ratio:.2f}x "
                  f"(rounds {min(ratios):.2f}-{max(ratios):.2f}x; CPU time {pruned_cpu / dense_cpu:.2f}x)", flush=True)
    return results


def run_child(backend, framework, rounds, epochs):
    """`measure` in a process of its own on `backend`: its entry for the JSON, or the error it ended with."""
    cmd = [sys.executable, __file__, "--backends", backend, "--framework", framework,
           "--rounds", str(rounds), "--epochs", str(epochs)]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    lines = out.stdout.strip().splitlines()
    if out.returncode or not lines:
        print(f"{backend} {framework}: failed\n{out.stderr[-2000:]}")
        return {"error": (out.stderr or out.stdout)[-2000:]}
    print("\n".join(lines[:-1]))
    return {**json.loads(lines[-1]), "rounds": rounds, "epochs": epochs}


def summarize(report):
    """Adds the table of ratios, and which entries ran with fewer rounds or epochs than the defaults."""
    report["ratios"] = ratio_table(report)
    reduced = [f"{backend}/{framework}" for backend in BACKENDS for framework, entry in report.get(backend, {}).items()
               if (entry.get("rounds", DEFAULT_ROUNDS), entry.get("epochs", DEFAULT_EPOCHS))
               < (DEFAULT_ROUNDS, DEFAULT_EPOCHS)]
    report.pop("reduced_sizes", None)
    if reduced:
        report["reduced_sizes"] = (f"{', '.join(reduced)}: fewer rounds or epochs than the defaults "
                                   "(each entry says how many), so that a full run takes about 10 minutes here")


def ratio_table(report):
    """{backend: {framework: {architecture: {frequency: {ratio, cpu_ratio}}}}} from the full entries, rounded."""
    return {backend: {framework: {arch: {key.removeprefix("frequency_"): {"ratio": round(entry["ratio"], 2),
                                                                          "cpu_ratio": round(entry["cpu_ratio"], 2)}
                                         for key, entry in measured[arch].items() if key.startswith("frequency_")}
                                  for arch in ARCHITECTURES if arch in measured}
                      for framework, measured in report[backend].items()}
            for backend in BACKENDS if backend in report}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--framework", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    parser.add_argument("--only", nargs="+", choices=FRAMEWORKS,
                        help="measure these only and update their entries in the existing JSON")
    args = parser.parse_args()
    if args.framework:  # child process, started by run_child on one backend: print JSON only on the last line
        os.environ["KERAS_BACKEND"] = args.backends[0]  # before `measure` imports Keras
        print(json.dumps(measure(args.framework, args.rounds, args.epochs)))
        return
    path = RESULTS / "training_overhead.json"
    report = json.loads(path.read_text()) if args.only and path.exists() else {}
    report.update({
        "benchmark": "training_overhead",
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "batch_size": BATCH,
        "schedule": "PolynomialDecay(0 -> 0.9, end_step = all steps), frequency as in each entry's key",
        "dataset": "MNIST 5k training subset",
        "defaults": {"rounds": DEFAULT_ROUNDS, "epochs": DEFAULT_EPOCHS},  # each entry says what it ran
    })
    for backend in args.backends:
        for framework in args.only or FRAMEWORKS:
            if backend == "tensorflow" or framework not in TENSORFLOW_ONLY:
                report.setdefault(backend, {})[framework] = run_child(backend, framework, args.rounds, args.epochs)
    summarize(report)
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["ratios"], indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
