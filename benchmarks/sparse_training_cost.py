"""What dynamic sparse training costs per step: SET and RigL `fit` against dense `fit`, side by side.

LeNet-300-100 and the small CNN of `sparse_methods.py` on the MNIST 5k subset, batch 64, SGD with
momentum, 90% sparsity (ERK), `update_every=100` (drop_fraction 0.3). Each round fits every variant in
turn for 3 epochs and times its last two (the first traces the train step: every `fit` with
`UpdatePruningStep` traces it again); the round's time per epoch is divided by the dense one of that
round, and the median over rounds is reported. The sparse models compute as dense ones
(masks are multiplied in, the kernels stay dense): the cost is the mask constraint after each step, the
updates every 100 steps and, for RigL, keeping the gradient on the update steps. The time of one
SET update (`PruningController.finish_step` on an update step, outside `fit`) is measured on its own,
the part of the ratio that is not noise on this shared machine.

Run: `python benchmarks/sparse_training_cost.py [--rounds 5]`. Writes benchmarks/results/sparse_training_cost.json.
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
from sparse_methods import BATCH, MODELS, EpochTimes, compiled  # noqa: E402

import tfprune  # noqa: E402
from tfprune.data import load_mnist  # noqa: E402
from tfprune.files import atomic_write  # noqa: E402

RESULTS = Path(__file__).parent / "results"
VARIANTS = ("dense", "set", "rigl")


def prepared(variant, build, steps):
    keras.utils.set_random_seed(0)
    model = build()
    if variant != "dense":
        model = tfprune.sparse_training(model, 0.9, method=variant, update_every=100, end_step=100 * steps)
    return compiled(model, 0.02)


def seconds_per_epoch(model, variant, x, y):
    """Fits 3 epochs; the median time of the last two."""
    timer = EpochTimes()
    callbacks = [timer] if variant == "dense" else [tfprune.UpdatePruningStep(), timer]
    model.fit(x, y, batch_size=BATCH, epochs=3, verbose=0, callbacks=callbacks)
    return float(np.median(timer.times[1:]))


def update_milliseconds(model, repeats=10):
    """The median time of one weight move of a trained SET model, called as UpdatePruningStep calls it."""
    controller = tfprune.PruningController(model)
    every = model.layers[0].pruning_schedule.update_every
    times = []
    for k in range(1, repeats + 1):
        start = time.perf_counter()
        controller.finish_step(k * every)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    (x_train, y_train), _ = load_mnist()
    steps = int(np.ceil(len(x_train) / BATCH))
    result = {"setup": {"data": "MNIST 5k subset", "batch": BATCH, "sparsity": 0.9, "update_every": 100,
                        "steps_per_epoch": steps, "rounds": args.rounds, "keras_backend": keras.backend.backend(),
                        "machine": platform.processor() or platform.machine()}, "models": {}}
    for name, (build, input_shape) in MODELS.items():
        x = x_train.reshape(-1, *input_shape)
        models = {variant: prepared(variant, build, steps) for variant in VARIANTS}
        seconds = {variant: [] for variant in VARIANTS}
        for _ in range(args.rounds):
            for variant, model in models.items():
                seconds[variant].append(seconds_per_epoch(model, variant, x, y_train))
        ratios = {variant: float(np.median(np.array(seconds[variant]) / np.array(seconds["dense"])))
                  for variant in VARIANTS[1:]}
        update = update_milliseconds(models["set"])
        result["models"][name] = {"seconds_per_epoch": {v: float(np.median(s)) for v, s in seconds.items()},
                                  "step_time_vs_dense": ratios, "set_update_ms": update}
        print(f"{name}: dense {np.median(seconds['dense']):.3f} s/epoch; " +
              ", ".join(f"{v} {r:.3f}x" for v, r in ratios.items()) + f"; one SET update {update:.1f} ms", flush=True)
    RESULTS.mkdir(exist_ok=True)
    atomic_write(RESULTS / "sparse_training_cost.json", json.dumps(result, indent=1).encode())


if __name__ == "__main__":
    main()
