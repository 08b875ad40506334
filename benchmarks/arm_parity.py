"""Do exported models give the same outputs on aarch64 LiteRT as on x86? Correctness only.

LeNet-300-100 on MNIST, trained as in deploy_lenet.py (dense, then pruned to 90%), exported
as float32, dense INT8 and pruned INT8. Each model runs the 10k MNIST test set on this
machine's LiteRT and on the aarch64 LiteRT wheel under qemu-user (Cortex-A76), with XNNPack
on and off, and the raw outputs are compared. Emulated timings mean nothing: none are recorded.

Needs qemu-user and apt with arm64 enabled (`make arm-check` sets both up, as root).
Run: `python benchmarks/arm_parity.py [--sysroot .arm64-sysroot] [--samples 10000]`.
Writes benchmarks/results/arm_parity.json.
"""

import argparse
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from deploy_lenet import RESULTS, flat_mnist, train_dense_and_pruned  # noqa: E402

from tfprune.deploy import export_tflite  # noqa: E402
from tfprune.deploy.aarch64 import LiteRTProcess, build_sysroot, compare_with_host  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sysroot", default=Path(__file__).parent.parent / ".arm64-sysroot")
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--cpu", default="cortex-a76")
    args = parser.parse_args()
    runtime = LiteRTProcess.aarch64(build_sysroot(args.sysroot), cpu=args.cpu)
    (x, y), (x_test, _) = flat_mnist()
    dense, pruned = train_dense_and_pruned(x, y)
    x_test = x_test[: args.samples]
    comparisons = []
    with tempfile.TemporaryDirectory() as tmp:
        exports = {
            "dense_float32": (dense, {}),
            "dense_int8": (dense, {"quantize": "int8", "representative_data": x[:500]}),
            "pruned_int8": (pruned, {"quantize": "int8", "representative_data": x[:500], "sparse_encoding": True}),
        }
        for name, (model, options) in exports.items():
            path = Path(tmp) / f"{name}.tflite"
            export_tflite(model, path, parity_data=x_test[:1000], **options)
            for use_xnnpack in (True, False):
                result = compare_with_host(path, x_test, runtime, use_xnnpack=use_xnnpack)
                result["model"] = name
                comparisons.append(result)
                print(f"{name:14s} xnnpack={use_xnnpack!s:5s} bit-identical {result['raw_exact_match']:.2%}  "
                      f"max |diff| {result['max_abs_diff']:.3g}  top-1 agreement {result['top1_agreement']:.2%}",
                      flush=True)
    qemu_version = subprocess.run(["qemu-aarch64", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    report = {
        "benchmark": "arm_parity",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "emulator": f"{qemu_version}, -cpu {args.cpu}",
        "aarch64_sysroot": (Path(args.sysroot) / ".complete").read_text().strip(),
        "dataset": f"MNIST test set, first {len(x_test)} samples",
        "comparisons": comparisons,
        "int8_bit_identical": all(c["raw_exact_match"] == 1.0 for c in comparisons if c["output_dtype"] == "int8"),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "arm_parity.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"INT8 outputs bit-identical on aarch64 and x86: {report['int8_bit_identical']}")


if __name__ == "__main__":
    main()
