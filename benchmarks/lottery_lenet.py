"""Lottery tickets on LeNet-300-100 (Frankle & Carbin 2019, figure 3) with tfprune.IterativePruning.

Paper (full MNIST, 50k iterations per round): pruning 20% of each hidden layer and 10% of the
output layer per round and rewinding the survivors to their initial weights, the winning
tickets match or beat the dense network down to about 3.6% of the weights and reach their best
validation accuracy earlier; the same masks with fresh random weights fall behind early.

Here: the 5k MNIST subset (4,500 train / 500 validation), the official 10k test set, Adam 1.2e-3,
batch 60, the same pruning rates, rewinding to step 0, and the random re-initialisation control.

Run: `python benchmarks/lottery_lenet.py [--seeds 3] [--rounds 15] [--epochs 20]`.
Writes benchmarks/results/lottery_lenet.json and lottery_lenet.png.
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
from iterative_runs import arguments, mnist_split, run_grid, write  # noqa: E402

L = keras.layers


def lenet_300_100():
    return keras.Sequential([keras.Input((784,)), L.Dense(300, activation="relu", name="fc1"),
                             L.Dense(100, activation="relu", name="fc2"), L.Dense(10, name="output")])


def compile_kwargs():
    return dict(optimizer=keras.optimizers.Adam(1.2e-3),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])


def main():
    args = arguments(__doc__.splitlines()[0], seeds=3, rounds=15, epochs=20)
    started = time.time()
    variants = {"winning ticket (rewind to init)": dict(mode="weights"),
                "random reinit (same masks)": dict(mode="weights", control="reinit")}
    runs = run_grid("lottery_lenet", variants, lenet_300_100, compile_kwargs, mnist_split(flat=True), args,
                    rate=0.2, layer_rates={"output": 0.1}, rewind_step=0,
                    fit_kwargs=dict(epochs=args.epochs, batch_size=60))
    setup = {"model": "LeNet-300-100", "data": "MNIST 5k subset: 4,500 train, 500 validation; 10k test",
             "optimizer": "Adam 1.2e-3", "batch": 60, "epochs_per_round": args.epochs, "rate": 0.2,
             "output_layer_rate": 0.1, "rewind_step": 0, "seeds": args.seeds, "rounds": args.rounds}
    write("lottery_lenet", setup, runs, started)


if __name__ == "__main__":
    main()
