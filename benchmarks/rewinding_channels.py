"""Retraining a channel-pruned CNN: fine-tuning vs WeightRewinding vs LearningRateRewinding, inside one `fit`.

The callbacks on their own (no driver): the small CNN of rewinding_modes.py trains for one phase
with SGD (momentum 0.9; 0.05, /10 at 50% and 75% of the phase), then `prune_channels` removes half
of the channels of every layer at once (L2, one-shot on the first batch after the phase), then training goes on
for the same number of epochs:

- fine-tuning: the schedule stays at its final rate;
- weight rewinding: `WeightRewinding(rewind_epoch=1)`, weights and optimizer back to the end of epoch 1;
- learning-rate rewinding: `LearningRateRewinding(rewind_epoch=1)`, the schedule replays from epoch 1.

The pruned models are then shrunk and evaluated on the 10k MNIST test set.

Run: `python benchmarks/rewinding_channels.py [--seeds 3] [--epochs 8]`.
Writes benchmarks/results/rewinding_channels.json.
"""

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from iterative_runs import RESULTS, mnist_split  # noqa: E402
from rewinding_modes import BATCH, STEPS_PER_EPOCH, small_cnn  # noqa: E402

import tfprune  # noqa: E402

SPARSITY = 0.5


def retrain(mode, seed, epochs, data):
    (x, y), validation, (x_test, y_test) = data
    keras.utils.set_random_seed(seed)
    phase = epochs * STEPS_PER_EPOCH
    prune_at = phase + 1  # the first batch after the phase (the first batch is step 1)
    pruned = tfprune.prune_channels(small_cnn(), tfprune.ConstantSparsity(SPARSITY, begin_step=prune_at,
                                                                          end_step=prune_at, frequency=1))
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([phase // 2, 3 * phase // 4], [0.05, 0.005, 5e-4])
    pruned.compile(keras.optimizers.SGD(schedule, momentum=0.9),
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    rewinding = {"fine-tuning": [], "weight rewinding": [tfprune.WeightRewinding(rewind_epoch=1, verbose=0)],
                 "learning-rate rewinding": [tfprune.LearningRateRewinding(rewind_epoch=1, verbose=0)]}[mode]
    accuracy_before = {}
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: accuracy_before.setdefault(
        "dense", pruned.evaluate(x_test, y_test, verbose=0, batch_size=500)[1]) if epoch + 1 == epochs else None)
    pruned.fit(x, y, batch_size=BATCH, epochs=2 * epochs, validation_data=validation, verbose=0,
               callbacks=[tfprune.UpdatePruningStep(), record, *rewinding])
    small = tfprune.shrink(tfprune.strip_pruning(pruned), verbose=0)
    small.compile(metrics=["accuracy"], loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    cost, dense_cost = tfprune.model_cost(small), tfprune.model_cost(small_cnn())
    return {"mode": mode, "seed": seed, "dense_test_accuracy": float(accuracy_before["dense"]),
            "test_accuracy": float(small.evaluate(x_test, y_test, verbose=0, batch_size=500)[1]),
            "flops_ratio": round(cost.flops / dense_cost.flops, 4), "params_ratio": round(cost.params / dense_cost.params, 4)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8, help="epochs before pruning, and again after it")
    args = parser.parse_args()
    started, data = time.time(), mnist_split(flat=False)
    runs = []
    for mode in ("fine-tuning", "weight rewinding", "learning-rate rewinding"):
        for seed in range(args.seeds):
            runs.append(retrain(mode, seed, args.epochs, data))
            print(f"{mode}, seed {seed}: dense {runs[-1]['dense_test_accuracy']:.4f} -> pruned and shrunk "
                  f"{runs[-1]['test_accuracy']:.4f} at {runs[-1]['flops_ratio']:.3f} of the FLOPs", flush=True)
    summary = {}
    for mode in dict.fromkeys(r["mode"] for r in runs):
        accuracies = np.array([r["test_accuracy"] for r in runs if r["mode"] == mode])
        summary[mode] = {"test_accuracy_mean": round(float(accuracies.mean()), 4),
                         "test_accuracy_min": round(float(accuracies.min()), 4),
                         "test_accuracy_max": round(float(accuracies.max()), 4)}
        print(f"{mode}: {100 * accuracies.mean():.2f}% [{100 * accuracies.min():.2f}-{100 * accuracies.max():.2f}]")
    RESULTS.mkdir(exist_ok=True)
    result = {"benchmark": "rewinding_channels", "channel_sparsity": SPARSITY, "epochs_per_phase": args.epochs,
              "summary": summary, "runs": runs, "machine": platform.platform(), "keras": keras.__version__,
              "seconds": round(time.time() - started)}
    (RESULTS / "rewinding_channels.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
