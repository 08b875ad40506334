"""Fine-tuning vs weight rewinding vs learning-rate rewinding (Renda, Frankle & Carbin 2020) on a small CNN.

Paper reference (ResNet-20 on CIFAR-10 at 10.7% of the weights): fine-tuning 89.78%, weight
rewinding 91.00%, learning-rate rewinding 91.23%, dense 91.71%: both rewinding methods beat
fine-tuning, and learning-rate rewinding matches or beats weight rewinding.

Here: a two-convolution CNN on the 5k MNIST subset (4,500 train / 500 validation), the official 10k
test set, SGD with momentum 0.9 and a step schedule (0.05, then /10 at 50% and 75% of a round),
iterative global magnitude pruning of 20% of the remaining weights per round, the same budget
per round for every mode. Weight rewinding goes back to the end of epoch 1 (step k = 75) and
learning-rate rewinding replays the schedule from there; fine-tuning trains at the final rate.

Run: `python benchmarks/rewinding_modes.py [--seeds 3] [--rounds 11] [--epochs 8]`.
Writes benchmarks/results/rewinding_modes.json and rewinding_modes.png.
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
from iterative_runs import arguments, mnist_split, run_grid, write  # noqa: E402

L = keras.layers
BATCH = 60
STEPS_PER_EPOCH = 4500 // BATCH
PAPER = {"fine-tuning": 89.78, "weight rewinding": 91.00, "learning-rate rewinding": 91.23, "dense": 91.71}


def small_cnn():
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        L.Conv2D(32, 3, activation="relu", name="conv1"), L.MaxPooling2D(),
        L.Conv2D(64, 3, activation="relu", name="conv2"), L.MaxPooling2D(),
        L.Flatten(), L.Dense(128, activation="relu", name="fc"), L.Dense(10, name="output"),
    ])


def main():
    args = arguments(__doc__.splitlines()[0], seeds=3, rounds=11, epochs=8)
    started = time.time()
    steps = args.epochs * STEPS_PER_EPOCH

    def compile_kwargs():
        schedule = keras.optimizers.schedules.PiecewiseConstantDecay([steps // 2, 3 * steps // 4], [0.05, 0.005, 5e-4])
        return dict(optimizer=keras.optimizers.SGD(schedule, momentum=0.9),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])

    variants = {"fine-tuning": dict(mode="finetune"), "weight rewinding": dict(mode="weights"),
                "learning-rate rewinding": dict(mode="lr")}
    runs = run_grid("rewinding_modes", variants, small_cnn, compile_kwargs, mnist_split(flat=False), args,
                    rate=0.2, scope="global", rewind_step=STEPS_PER_EPOCH,
                    fit_kwargs=dict(epochs=args.epochs, batch_size=BATCH))
    setup = {"model": "CNN conv32-conv64-fc128-fc10", "data": "MNIST 5k subset: 4,500 train, 500 validation; 10k test",
             "optimizer": "SGD momentum 0.9, 0.05 -> 0.005 -> 0.0005 at 50% / 75% of a round",
             "batch": BATCH, "epochs_per_round": args.epochs, "rate": 0.2, "scope": "global",
             "rewind_step": STEPS_PER_EPOCH, "finetune_learning_rate": 5e-4, "seeds": args.seeds,
             "rounds": args.rounds, "paper_resnet20_cifar10_at_10.7pct": PAPER}
    table = write("rewinding_modes", setup, runs, started)
    closest = min(range(len(table["fine-tuning"])),
                  key=lambda i: abs(table["fine-tuning"][i]["weights_remaining"] - 10.7))
    ranking = sorted(table, key=lambda label: -table[label][closest]["test_accuracy_mean"])
    print(f"\nAt {table['fine-tuning'][closest]['weights_remaining']:.1f}% of the weights: "
          + " > ".join(f"{label} {100 * table[label][closest]['test_accuracy_mean']:.2f}" for label in ranking)
          + f"; dense {100 * table['fine-tuning'][0]['test_accuracy_mean']:.2f}. Paper: learning-rate rewinding > "
          "weight rewinding > fine-tuning.")


if __name__ == "__main__":
    main()
