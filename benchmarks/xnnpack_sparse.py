"""Where XNNPack's sparse kernels pay on ARM: PruneForLatencyOnXNNPack at 0-90%, counted under qemu.

A MobileNetV1 (alpha 1.0, 128x128 by default, 1000 classes, untrained: the work does not depend on the
weights) with the stem that policy requires (ZeroPadding2D(1) + a stride-2 3x3 "valid" Conv2D) has
its 1x1 convolutions pruned to 0, 50, 70, 80 and 90% by magnitude, then is exported to float32 and
float16, each with and without TFLite's sparse encoding (`sparse_encoding=True`). XNNPack runs
sparse kernels only on ARM (x86 CPUs with AVX switch them off), only for a sparse-encoded file,
and only where the 1x1 weights are more than 2/3 zeros (as XNNPack documents). For every file:

- aarch64 instructions per inference on a Cortex-A76 and a Cortex-A53 (qemu-user, our plugin);
- the aarch64 outputs against x86's on the same inputs (`compare_with_host`: SQNR, max difference);
- the x86 latency, interleaved per precision (sparse kernels are off here, so it stays about flat).

Needs qemu-user, gcc and the aarch64 sysroot (`make arm-check` sets them up, as root).
Run: `python benchmarks/xnnpack_sparse.py [--sysroot .arm64-sysroot] [--size 128] [--runs 50]` (about 30
minutes at 128x128: qemu runs the 5 + 4 emulated inferences of each of the 20 files on two CPUs).
Writes benchmarks/results/xnnpack_sparse.json.
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

import tfprune  # noqa: E402
from tfprune.deploy import count_instructions, export_tflite  # noqa: E402
from tfprune.deploy.aarch64 import LiteRTProcess, build_sysroot, compare_with_host  # noqa: E402
from tfprune.deploy.bench import benchmark_tflite  # noqa: E402
from tfprune.deploy.instructions import INSTRUCTIONS_ARE_NOT_LATENCY  # noqa: E402
from tfprune.files import atomic_write  # noqa: E402

RESULTS = Path(__file__).parent / "results"
CPUS = ("cortex-a76", "cortex-a53")
SPARSITIES = (0.0, 0.5, 0.7, 0.8, 0.9)
PRECISIONS = {"float32": None, "float16": "float16"}
# MobileNetV1's depthwise-separable blocks: (pointwise filters, depthwise stride)
BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]


def mobilenet_v1(size, alpha=1.0, classes=1000):
    """MobileNetV1 with the stem (and strided depthwise convolutions) XNNPack's sparse inference requires."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.ZeroPadding2D(1)(inputs)
    x = keras.layers.Conv2D(int(32 * alpha), 3, strides=2, use_bias=False)(x)
    x = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization()(x))
    for filters, stride in BLOCKS:
        if stride == 2:  # the policy (and XNNPack's NCHW path) takes a strided depthwise after ZeroPadding2D(1)
            x = keras.layers.ZeroPadding2D(1)(x)
        x = keras.layers.DepthwiseConv2D(3, strides=stride, padding="valid" if stride == 2 else "same",
                                         use_bias=False)(x)
        x = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization()(x))
        x = keras.layers.Conv2D(int(filters * alpha), 1, use_bias=False)(x)
        x = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization()(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes)(x), name="mobilenet_v1")


def pruned_for_xnnpack(model, sparsity):
    """The 1x1 convolutions pruned to `sparsity` by magnitude (the policy checks the model suits the sparse path)."""
    if sparsity == 0:
        return model
    pruned = tfprune.prune_low_magnitude(model, tfprune.ConstantSparsity(sparsity, 0),
                                         pruning_policy=tfprune.PruneForLatencyOnXNNPack())
    tfprune.PruningController(pruned).prune_to(sparsity)
    return tfprune.strip_pruning(pruned)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sysroot", default=Path(__file__).parent.parent / ".arm64-sysroot")
    parser.add_argument("--size", type=int, default=128, help="input height and width (224: 3x the emulation)")
    parser.add_argument("--runs", type=int, default=50, help="timed x86 invokes per model, interleaved")
    parser.add_argument("--samples", type=int, default=4, help="inputs compared between aarch64 and x86")
    args = parser.parse_args()
    started = time.time()
    sysroot = build_sysroot(args.sysroot)
    dense = mobilenet_v1(args.size)
    x = np.random.default_rng(0).uniform(-1, 1, (args.samples, args.size, args.size, 3)).astype("float32")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for precision, quantize in PRECISIONS.items():
            files = []
            for sparsity in SPARSITIES:
                model = pruned_for_xnnpack(dense, sparsity)
                for sparse in (False, True):
                    path = Path(tmp) / f"{precision}_{int(sparsity * 100)}{'_sparse' if sparse else ''}.tflite"
                    report = export_tflite(model, path, quantize=quantize, sparse_encoding=sparse, parity_data=x,
                                           arm_sysroot=None)  # checked below, on both CPUs, for every file
                    files.append((path, {"precision": precision, "sparsity": sparsity, "sparse_conversion": sparse,
                                         "sparse_encoding": report.sparse_encoding, "file_bytes": report.file_bytes,
                                         "keras_parity_sqnr_db": report.parity["outputs"]["output_0"]["sqnr_db"]}))
            timed = benchmark_tflite([path for path, _ in files], runs=args.runs, warmup=max(1, args.runs // 10))
            for (path, row), entry in zip(files, timed["models"]):
                row["x86_median_ms"] = entry["median_ms"]
                for cpu in CPUS:
                    row.update(_on_arm(path, x, sysroot, cpu))
                print(_line(row), flush=True)
                rows.append(row)
    for row in rows:
        reference = next(r for r in rows if r["precision"] == row["precision"] and r["sparsity"] == 0
                         and not r["sparse_conversion"])
        row["x86_latency_ratio"] = row["x86_median_ms"] / reference["x86_median_ms"]
        for cpu in CPUS:
            if row.get(f"{cpu}_instructions"):
                row[f"{cpu}_ratio"] = row[f"{cpu}_instructions"] / reference[f"{cpu}_instructions"]
    result = {"benchmark": "xnnpack_sparse", "note": INSTRUCTIONS_ARE_NOT_LATENCY, "size": args.size,
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
              "flops": tfprune.model_cost(dense).flops, "rows": rows, "seconds": time.time() - started}
    print(f"\n{'precision':<9}{'sparsity':>9}{'sparse file':>12}{'bytes':>12}{'x86 lat':>9}"
          + "".join(f"{cpu:>12}{'SQNR vs x86':>13}" for cpu in CPUS))
    for row in rows:
        print(f"{row['precision']:<9}{row['sparsity']:>9.0%}{row['sparse_encoding'].split()[0]:>12}{row['file_bytes']:>12,}"
              f"{row['x86_latency_ratio']:>9.3f}"
              + "".join(f"{row.get(f'{cpu}_ratio', float('nan')):>12.3f}{_sqnr(row, cpu):>13}" for cpu in CPUS))
    print(INSTRUCTIONS_ARE_NOT_LATENCY)
    RESULTS.mkdir(exist_ok=True)
    atomic_write(RESULTS / "xnnpack_sparse.json", (json.dumps(result, indent=2) + "\n").encode())


def _on_arm(path, x, sysroot, cpu):
    """Instructions per inference on `cpu` and the outputs against x86's, or why aarch64 LiteRT failed."""
    try:
        counted = count_instructions(path, sysroot, cpu=cpu, input_data=x[0])
        compared = compare_with_host(path, x, LiteRTProcess.aarch64(sysroot, cpu=cpu))
    except RuntimeError as error:
        return {f"{cpu}_error": str(error).strip().splitlines()[-1][:300]}
    return {f"{cpu}_instructions": counted["instructions_per_inference"], f"{cpu}_spread": counted["spread"],
            f"{cpu}_sqnr_vs_x86_db": compared["metrics"]["sqnr_db"],
            f"{cpu}_max_abs_diff_vs_x86": compared["max_abs_diff"]}


def _sqnr(row, cpu):
    value = row.get(f"{cpu}_sqnr_vs_x86_db")
    return "failed" if value is None else f"{value:.1f} dB"


def _line(row):
    counts = ", ".join(f"{cpu} {row[f'{cpu}_instructions']:,.0f}" if f"{cpu}_instructions" in row
                       else f"{cpu} failed: {row[f'{cpu}_error']}" for cpu in CPUS)
    return (f"{row['precision']} {row['sparsity']:.0%} sparse conversion {row['sparse_conversion']} "
            f"({row['sparse_encoding']}, {row['file_bytes']:,} bytes): x86 {row['x86_median_ms']:.2f} ms; {counts}")


if __name__ == "__main__":
    main()
