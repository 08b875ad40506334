"""How well a latency table predicts measured latency, and where a LatencyBudget of 0.5 lands.

For each model (untrained: INT8 latency does not depend on the weights), a `LatencyTable` is
measured with LiteRT on this machine (1 thread, 3 grid points per role, `round_to="auto"`: the
multiples of channels this machine's INT8 kernels prefer, measured). Then random channel
configurations (every set keeps a random multiple of round_to of its channels, at most 90% pruned),
the model pruned to `LatencyBudget(0.5)`, to `FlopsBudget(0.5)` and uniformly (50% of every set, L2)
are shrunk, exported to INT8 and timed with the dense model, in one run (the files taking turns of
10 runs, as the table's are): predicted and measured latency ratios to dense, the median prediction
error, and the FLOPs each leaves (latency/FLOPs: how much of the FLOPs saved became speed).

Run: `python benchmarks/latency_budget.py [--random 8] [--runs 300] [--models mnist_cnn ...]`. Writes
benchmarks/results/latency_budget.json (tables are cached in ~/.cache/tfprune/latency); a run of some models
keeps the others' results in it (each says when it was measured).
"""

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from structured_latency import mnist_cnn  # noqa: E402

import tfprune  # noqa: E402
from tfprune.deploy import LocalLiteRT, export_tflite  # noqa: E402
from tfprune.files import atomic_write  # noqa: E402
from tfprune.structured.channel_cost import ChannelCost  # noqa: E402
from tfprune.structured.controller import ChannelController  # noqa: E402

RESULTS = Path(__file__).parent / "results"
MODELS = {
    "mnist_cnn": mnist_cnn,
    "mobilenet_v2_a0.35_96": lambda: keras.applications.MobileNetV2(weights=None, alpha=0.35, input_shape=(96, 96, 3),
                                                                    classes=10),
    "mobilenet_v2_a1.0_96": lambda: keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3), classes=10),
    "efficientnet_b0_96": lambda: keras.applications.EfficientNetB0(weights=None, input_shape=(96, 96, 3), classes=10),
    "mobilenet_v2_a1.0_160": lambda: keras.applications.MobileNetV2(weights=None, input_shape=(160, 160, 3),
                                                                    classes=10),
    "resnet50_96": lambda: keras.applications.ResNet50(weights=None, input_shape=(96, 96, 3), classes=10),
}


def random_configuration(model, rng, round_to):
    """`model` channel-pruned to a random multiple of `round_to` channels in every set (at most 90% pruned)."""
    pruned = tfprune.prune_channels(model, tfprune.ConstantSparsity(0.5, 0), round_to=round_to)
    controller = ChannelController(pruned)
    sizes = np.array([s.size for s in controller.sets])
    counts = sizes
    while (counts == sizes).all():  # drawn again until some channel goes
        counts = sizes - np.array([rng.integers(0, int(0.9 * size) + 1) // round_to * round_to for size in sizes])
    controller.keep_counts(counts.tolist(), step=0)
    return pruned


def uniform(model, sparsity, round_to):
    """`model` with `sparsity` of every set's channels pruned by L2 norm."""
    pruned = tfprune.prune_channels(model, tfprune.ConstantSparsity(sparsity, 0), round_to=round_to)
    ChannelController(pruned).prune_to(sparsity, step=0)
    return pruned


def study(name, model, table, rng, count, runs, folder):
    dense_flops = tfprune.model_cost(model).flops
    round_to = table.round_to
    configurations = {f"random_{i}": random_configuration(model, rng, round_to) for i in range(count)}
    configurations["latency_budget_0.5"] = tfprune.prune_to_budget(model, tfprune.LatencyBudget(0.5, table=table))
    configurations["flops_budget_0.5"] = tfprune.prune_to_budget(model, tfprune.FlopsBudget(0.5), round_to=round_to)
    configurations["uniform_l2_0.5"] = uniform(model, 0.5, round_to)
    samples = np.random.default_rng(0).uniform(-1, 1, (16, *model.input_shape[1:])).astype("float32")
    paths, rows = [folder / f"{name}_dense.tflite"], {}
    export_tflite(model, paths[0], quantize="int8", representative_data=samples, parity_data=samples[:4],
                  on_parity_failure="warn", arm_sysroot=None)
    for label, pruned in configurations.items():
        controller = ChannelController(pruned)
        predicted = ChannelCost.latency(pruned, controller.sets, table).total(controller.kept_groups()) / table.dense
        small = tfprune.shrink(pruned, verbose=False)
        paths.append(folder / f"{name}_{label}.tflite")
        export_tflite(small, paths[-1], quantize="int8", representative_data=samples, parity_data=samples[:4],
                      on_parity_failure="warn", arm_sysroot=None)
        rows[label] = {"predicted_ratio": predicted, "flops_ratio": tfprune.model_cost(small).flops / dense_flops}
    timed = LocalLiteRT(num_threads=1, runs=runs, warmup=runs // 10).measure(paths)
    dense_ms = timed[0].cost
    for row, entry in zip(rows.values(), timed[1:]):
        row["measured_ratio"] = entry.cost / dense_ms
        row["error"] = row["predicted_ratio"] / row["measured_ratio"] - 1
        row["latency_over_flops"] = row["measured_ratio"] / row["flops_ratio"]
    errors = [abs(row["error"]) for label, row in rows.items() if label.startswith("random_")]
    return {"dense_ms": dense_ms, "table_dense_ms": table.dense, "probes": len(table.probes), "round_to": round_to,
            "calibration": table.calibration, "configurations": rows,
            "median_abs_error_random": float(np.median(errors)), "max_abs_error_random": float(np.max(errors))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random", type=int, default=8, help="random channel configurations per model")
    parser.add_argument("--runs", type=int, default=300, help="timed invokes per model, in turns of 10")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS), help="which models")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # untrained models on random data: parity warnings say nothing here
    rng, started, result = np.random.default_rng(0), time.time(), {}
    device = LocalLiteRT(num_threads=1, runs=50, warmup=5)
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models:
            keras.utils.set_random_seed(0)
            model = MODELS[name]()
            begun = time.time()
            table = tfprune.LatencyTable.measure(model, device, levels=3)
            table_seconds = time.time() - begun
            result[name] = {"table_seconds": table_seconds, "measured_at": time.strftime("%Y-%m-%d %H:%M"),
                            **study(name, model, table, rng, args.random, args.runs, Path(folder))}
            found = result[name]
            print(f"{name}: table {table_seconds:.0f} s ({found['probes']} probes); random configurations: median "
                  f"|error| {found['median_abs_error_random']:.1%}, max {found['max_abs_error_random']:.1%}", flush=True)
            for label, row in found["configurations"].items():
                print(f"  {label:<20} FLOPs {row['flops_ratio']:.3f}  latency predicted {row['predicted_ratio']:.3f} "
                      f"measured {row['measured_ratio']:.3f} ({row['error']:+.1%}), latency/FLOPs "
                      f"{row['latency_over_flops']:.2f}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    earlier = RESULTS / "latency_budget.json"
    if args.models != list(MODELS) and earlier.is_file():  # a run of some models keeps the others' results
        kept = json.loads(earlier.read_text())
        if kept.get("settings") == device.settings:
            result = {**kept["models"], **result}
    summary = {"benchmark": "latency_budget", "device": device.name, "settings": device.settings,
               "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}, "models": result,
               "seconds": time.time() - started}
    atomic_write(RESULTS / "latency_budget.json", (json.dumps(summary, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
