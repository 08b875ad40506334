"""What the iterative-pruning benchmarks share: the MNIST split, a grid of driver runs over seeds, the summary.

Each run is an `IterativePruning` with its own checkpoint folder under `--work-dir`, so an
interrupted benchmark resumes where it stopped when started again with the same arguments.
"""

import argparse
import json
import platform
import time
from pathlib import Path

import keras
import numpy as np

import tfprune
from tfprune.data import load_mnist

RESULTS = Path(__file__).parent / "results"
VALIDATION = 500  # held out of the 5k training subset


def mnist_split(flat):
    """((x_train, y_train), (x_val, y_val), (x_test, y_test)): 4,500 / 500 of the 5k subset, the 10k test set."""
    (x, y), (x_test, y_test) = load_mnist()
    if flat:
        x, x_test = x.reshape(-1, 784), x_test.reshape(-1, 784)
    else:
        x, x_test = x[..., None], x_test[..., None]
    order = np.random.default_rng(0).permutation(len(x))  # the same split for every seed
    x, y = x[order], y[order]
    return (x[VALIDATION:], y[VALIDATION:]), (x[:VALIDATION], y[:VALIDATION]), (x_test, y_test)


def arguments(description, seeds, rounds, epochs):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, default=seeds, help="runs per variant (mean and spread)")
    parser.add_argument("--rounds", type=int, default=rounds, help="pruning rounds after the dense one")
    parser.add_argument("--epochs", type=int, default=epochs, help="training epochs per round")
    parser.add_argument("--work-dir", default=str(Path(__file__).parent / "work"),
                        help="checkpoints of every run; a rerun with the same arguments resumes")
    return parser.parse_args()


def run_grid(name, variants, build_model, compile_kwargs, data, args, **driver_kwargs):
    """Runs every variant (label -> IterativePruning arguments) for every seed; returns {label: [rows per seed]}."""
    train, validation, test = data
    runs = {}
    for label, variant in variants.items():
        runs[label] = []
        for seed in range(args.seeds):
            print(f"== {name}: {label}, seed {seed}", flush=True)
            keras.utils.set_random_seed(seed)
            driver = tfprune.IterativePruning(
                build_model(), compile_kwargs(), train, rounds=args.rounds, validation_data=validation,
                test_data=test, directory=str(Path(args.work_dir) / name / f"{label}-seed{seed}".replace(" ", "_")),
                seed=seed, **{**driver_kwargs, **variant})
            runs[label].append(driver.run())
    return runs


def summary(runs):
    """Per variant and round: % weights remaining, test accuracy mean / std / min / max, best step mean."""
    table = {}
    for label, seeds in runs.items():
        rows = []
        for round_rows in zip(*seeds):
            accuracies = np.array([r["test_accuracy"] for r in round_rows])
            rows.append({
                "round": round_rows[0]["round"],
                "weights_remaining": round_rows[0]["weights_remaining"],
                "test_accuracy_mean": round(float(accuracies.mean()), 4),
                "test_accuracy_std": round(float(accuracies.std()), 4),
                "test_accuracy_min": round(float(accuracies.min()), 4),
                "test_accuracy_max": round(float(accuracies.max()), 4),
                "best_step_mean": float(np.mean([r["best_step"] for r in round_rows])),
            })
        table[label] = rows
    return table


def write(name, setup, runs, started):
    """Writes results/<name>.json (setup, summary, every run's rows) and results/<name>.png; returns the summary."""
    RESULTS.mkdir(exist_ok=True)
    table = summary(runs)
    result = {"benchmark": name, "setup": setup, "summary": table, "runs": runs, "machine": platform.platform(),
              "keras": keras.__version__,
              "training_seconds": round(sum(r["seconds"] for rows in runs.values() for run in rows for r in run)),
              "seconds_this_invocation": round(time.time() - started)}  # small when the runs were resumed
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    tfprune.plot_pruning_curves(runs, RESULTS / f"{name}.png")
    for label, rows in table.items():
        print(f"\n{label}:\n  round  % weights  test accuracy (mean ± std over {len(runs[label])} seeds)  best step")
        for r in rows:
            print(f"  {r['round']:5d}  {r['weights_remaining']:9.2f}  {r['test_accuracy_mean']:.4f} ± "
                  f"{r['test_accuracy_std']:.4f}{'':26s}{r['best_step_mean']:.0f}")
    return table
