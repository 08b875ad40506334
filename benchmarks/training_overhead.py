"""Training-step overhead of pruning: pruned `fit` time / dense `fit` time, tfprune vs tfmot.

LeNet-300-100 (784-300-100-10) and a small CNN on the MNIST 5k subset, batch 60,
PolynomialDecay with frequency 10. Measured for tfprune's magnitude pruning, tfmot's, and
tfprune's channel pruning (`prune_channels`) with L2 and with Taylor importance (which
records gradients in the backward pass), with L2 plus a group-lasso penalty, and with L0
gates alone (no schedule). Dense and pruned epochs alternate in one process
so that the ratio holds on a noisy machine: each round fits a fresh dense and pruned
model (alternating which goes first), drops the first (tracing) epoch of each fit and
divides their median epoch times; the reported ratio is the median over rounds. The ratio of process CPU time is reported too:
on a shared VM it is less sensitive to time stolen by neighbours than wall time is. tfmot runs in a subprocess on tf-keras
(Keras 2), from the `bench` extra; tfprune never imports it.

Run: `make bench` or `python benchmarks/training_overhead.py [--rounds 8] [--epochs 3]`.
Writes benchmarks/results/training_overhead.json.
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
FRAMEWORKS = ("tfprune", "tfmot", "channels_l2", "channels_taylor", "channels_group_lasso", "channels_l0",
              "tfprune_weight_rewinding")


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

    (x, y), _ = load_mnist()
    results = {}
    for arch in ("lenet_300_100", "small_cnn"):
        xs = x.reshape(-1, 784) if arch == "lenet_300_100" else x[..., None]
        steps = -(-len(xs) // BATCH)
        dense_times, pruned_times, round_ratios = [], [], []
        for r in range(rounds):
            keras.utils.set_random_seed(r)
            dense = build(keras, arch)
            dense.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            schedule = schedule_cls(0.0, 0.9, begin_step=0, end_step=steps * epochs, frequency=10)
            pruned = prune(build(keras, arch), pruning_schedule=schedule)
            pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            fits = [(dense, [], dense_times), (pruned, pruning_callbacks(), pruned_times)]
            for model, callbacks, times in fits if r % 2 == 0 else fits[::-1]:  # alternate who goes first
                times.append(epoch_times(keras, model, xs, y, epochs, callbacks))
            round_ratios.append(statistics.median(t for t, _ in pruned_times[-1])
                                / statistics.median(t for t, _ in dense_times[-1]))
        dense_all, pruned_all = ([e for fit in t for e in fit] for t in (dense_times, pruned_times))
        dense_s, pruned_s = (statistics.median(wall for wall, _ in t) for t in (dense_all, pruned_all))
        dense_cpu, pruned_cpu = (statistics.median(cpu for _, cpu in t) for t in (dense_all, pruned_all))
        ratio = statistics.median(round_ratios)
        results[arch] = {"dense_epoch_s": dense_s, "pruned_epoch_s": pruned_s, "ratio": ratio,
                         "round_ratios": round_ratios, "dense_epoch_cpu_s": dense_cpu,
                         "pruned_epoch_cpu_s": pruned_cpu, "cpu_ratio": pruned_cpu / dense_cpu,
                         "epochs_measured": len(dense_all)}
        print(f"{framework:8s} {arch:14s} dense {dense_s:.3f}s/epoch  pruned {pruned_s:.3f}s/epoch  "
              f"ratio {ratio:.2f}x (rounds {min(round_ratios):.2f}-{max(round_ratios):.2f}x; "
              f"CPU time {pruned_cpu / dense_cpu:.2f}x)", flush=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--framework", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    parser.add_argument("--only", nargs="+", choices=FRAMEWORKS,
                        help="measure these only and update their entries in the existing JSON")
    args = parser.parse_args()
    if args.framework:  # child process: print JSON only on the last line
        print(json.dumps(measure(args.framework, args.rounds, args.epochs)))
        return
    path = RESULTS / "training_overhead.json"
    report = json.loads(path.read_text()) if args.only and path.exists() else {}
    report.update({
        "benchmark": "training_overhead",
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "batch_size": BATCH,
        "schedule": "PolynomialDecay(0 -> 0.9, frequency=10)",
        "dataset": "MNIST 5k training subset",
    })
    for framework in args.only or FRAMEWORKS:
        cmd = [sys.executable, __file__, "--framework", framework, "--rounds", str(args.rounds), "--epochs", str(args.epochs)]
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        lines = out.stdout.strip().splitlines()
        if out.returncode or not lines:
            report[framework] = {"error": (out.stderr or out.stdout)[-2000:]}
            print(f"{framework}: failed\n{out.stderr[-2000:]}")
            continue
        print("\n".join(lines[:-1]))
        report[framework] = {**json.loads(lines[-1]), "rounds": args.rounds, "epochs": args.epochs}
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
