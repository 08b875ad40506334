"""Find a lottery ticket on the embedded digits data (offline, about two minutes on 2 cores).

Trains a small MLP, then for 8 rounds prunes 20% of the remaining weights of each layer
(10% of the output layer), rewinds the survivors to their initial values and trains again;
the same masks with fresh random weights run alongside as the control.

Run: `.venv/bin/python examples/lottery_ticket.py [--out lottery_output]`; then see
lottery_output/curves.png and the results.json of each run.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import tfprune  # noqa: E402
from tfprune.data import load_digits  # noqa: E402


def mlp():
    return keras.Sequential([keras.Input((64,)), keras.layers.Dense(128, activation="relu", name="hidden1"),
                             keras.layers.Dense(64, activation="relu", name="hidden2"),
                             keras.layers.Dense(10, name="output")])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="lottery_output")
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    (x, y), (x_test, y_test) = load_digits()
    x, x_test = x.reshape(-1, 64), x_test.reshape(-1, 64)
    compile_kwargs = dict(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    curves = {}
    for label, control in (("winning ticket", None), ("random reinit", "reinit")):
        print(f"== {label}")
        keras.utils.set_random_seed(0)
        driver = tfprune.IterativePruning(
            mlp(), compile_kwargs, (x[:-200], y[:-200]), rounds=args.rounds, mode="weights", control=control,
            rate=0.2, layer_rates={"output": 0.1}, rewind_step=0,
            validation_data=(x[-200:], y[-200:]), test_data=(x_test, y_test),
            fit_kwargs=dict(epochs=15, batch_size=32), directory=os.path.join(args.out, label.replace(" ", "_")))
        curves[label] = [driver.run()]
    tfprune.plot_pruning_curves(curves, os.path.join(args.out, "curves.png"))
    print(f"Curves: {os.path.join(args.out, 'curves.png')}")


if __name__ == "__main__":
    main()
