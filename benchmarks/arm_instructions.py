"""aarch64 instructions per inference (counted under qemu-user) against x86 latency, dense vs channel-pruned.

Instruction counts are not latencies (no caches, memory bandwidth or pipelines under emulation):
this measures how well their ratios track the x86 latency ratios measured here, for the models of
structured_latency.py, rebuilt untrained (INT8 dense kernels do the same work whatever the weights):
the MNIST CNN dense and channel-pruned in one shot to about 50% and 25% of its FLOPs, and
MobileNetV2 (alpha 0.35 and 1.0) and EfficientNetB0 (96x96) dense and at about 50% of their FLOPs,
all shrunk and exported to INT8. Each model is counted on a Cortex-A76 (dot product) and a Cortex-A53 (none), and timed on
this machine with 1 thread, interleaved. Also LeNet-300-100 dense, 85% unstructured (INT8 has no
sparse path: about the dense count) and channel-pruned.

Needs qemu-user, gcc and the aarch64 sysroot (`make arm-check` sets them up, as root).
Run: `python benchmarks/arm_instructions.py [--sysroot .arm64-sysroot] [--runs 300]`.
Writes benchmarks/results/arm_instructions.json.
"""

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from deploy_lenet import lenet  # noqa: E402
from structured_latency import ROUND_TO, mnist_cnn, one_shot_to_flops  # noqa: E402

import tfprune  # noqa: E402
from tfprune.deploy import count_instructions, export_tflite  # noqa: E402
from tfprune.deploy.aarch64 import build_sysroot  # noqa: E402
from tfprune.deploy.bench import benchmark_tflite  # noqa: E402
from tfprune.deploy.instructions import INSTRUCTIONS_ARE_NOT_LATENCY  # noqa: E402

RESULTS = Path(__file__).parent / "results"
CPUS = ("cortex-a76", "cortex-a53")


def unstructured(model, sparsity):
    pruned = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(sparsity, 0))
    tfprune.PruningController(pruned).prune_to(sparsity)
    return tfprune.strip_pruning(pruned)


def studies():
    """{study: {name: Keras model}}, dense first."""
    keras.utils.set_random_seed(0)
    cnn, mlp = mnist_cnn(), lenet()
    mobilenet, mobilenet_a1 = (keras.applications.MobileNetV2(weights=None, alpha=alpha, input_shape=(96, 96, 3),
                                                              classes=10) for alpha in (0.35, 1.0))
    efficientnet = keras.applications.EfficientNetB0(weights=None, input_shape=(96, 96, 3), classes=10)
    return {
        "lenet": {"dense": mlp, "unstructured_85": unstructured(mlp, 0.85),
                  "channels_50": one_shot_to_flops(mlp, 0.5, round_to=8)},
        "mnist_cnn": {"dense": cnn, "flops_50": one_shot_to_flops(cnn, 0.5, round_to=ROUND_TO["mnist_cnn"]),
                      "flops_25": one_shot_to_flops(cnn, 0.25, round_to=ROUND_TO["mnist_cnn"])},
        "mobilenet_v2": {"dense": mobilenet, "flops_50": one_shot_to_flops(mobilenet, 0.5)},
        "mobilenet_v2_a1": {"dense": mobilenet_a1, "flops_50": one_shot_to_flops(mobilenet_a1, 0.5)},
        "efficientnet_b0": {"dense": efficientnet, "flops_50": one_shot_to_flops(efficientnet, 0.5)},
    }


def measure(study, models, tmp, sysroot, runs):
    rng = np.random.default_rng(0)
    paths = {}
    for name, model in models.items():
        shape = (64, *model.input_shape[1:])
        calibration = rng.uniform(0, 1, shape).astype("float32")
        paths[name] = tmp / f"{study}_{name}.tflite"
        export_tflite(model, paths[name], quantize="int8", representative_data=calibration,
                      parity_data=calibration[:16])
    bench = benchmark_tflite(list(paths.values()), num_threads=1, runs=runs, warmup=runs // 10)
    dense_flops = tfprune.model_cost(models["dense"]).flops
    rows = {}
    for (name, path), timed in zip(paths.items(), bench["models"]):
        row = {"flops_ratio": tfprune.model_cost(models[name]).flops / dense_flops, "x86_median_ms": timed["median_ms"]}
        for cpu in CPUS:
            counted = count_instructions(path, sysroot, cpu=cpu)
            row[f"{cpu}_instructions"] = counted["instructions_per_inference"]
            row[f"{cpu}_spread"] = counted["spread"]
            print(f"{study:>12} {name:<16} {cpu}: {counted['instructions_per_inference']:>14,.0f} "
                  f"instructions (spread {counted['spread']:.2%})", flush=True)
        rows[name] = row
    dense = rows["dense"]
    for row in rows.values():
        row["x86_latency_ratio"] = row["x86_median_ms"] / dense["x86_median_ms"]
        for cpu in CPUS:
            row[f"{cpu}_ratio"] = row[f"{cpu}_instructions"] / dense[f"{cpu}_instructions"]
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sysroot", default=Path(__file__).parent.parent / ".arm64-sysroot")
    parser.add_argument("--runs", type=int, default=300, help="timed x86 invokes per model, interleaved")
    args = parser.parse_args()
    started = time.time()
    sysroot = build_sysroot(args.sysroot)
    result = {"benchmark": "arm_instructions", "note": INSTRUCTIONS_ARE_NOT_LATENCY,
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}, "studies": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for study, models in studies().items():
            result["studies"][study] = measure(study, models, Path(tmp), sysroot, args.runs)
    pruned = [row for rows in result["studies"].values() for name, row in rows.items() if name != "dense"]
    x86 = np.array([row["x86_latency_ratio"] for row in pruned])
    result["tracking"] = {
        cpu: {"correlation_with_x86_latency_ratio": float(np.corrcoef(x86, [r[f"{cpu}_ratio"] for r in pruned])[0, 1]),
              "median_abs_ratio_difference": float(np.median(np.abs(x86 - [r[f"{cpu}_ratio"] for r in pruned])))}
        for cpu in CPUS}
    result["seconds"] = time.time() - started
    print(f"\n{'study':<17}{'model':<16}{'FLOPs':>7}{'x86 lat':>9}" + "".join(f"{cpu:>12}" for cpu in CPUS))
    for study, rows in result["studies"].items():
        for name, row in rows.items():
            print(f"{study:<17}{name:<16}{row['flops_ratio']:>7.3f}{row['x86_latency_ratio']:>9.3f}"
                  + "".join(f"{row[f'{cpu}_ratio']:>12.3f}" for cpu in CPUS))
    print(json.dumps(result["tracking"], indent=2))
    print(INSTRUCTIONS_ARE_NOT_LATENCY)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "arm_instructions.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
