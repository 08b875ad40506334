"""The `tfprune` command: export Keras models to TFLite and benchmark .tflite files.

    tfprune export MODEL.keras -o OUT.tflite --quantize int8 --calibration digits
    tfprune bench A.tflite [B.tflite ...] [--threads N] [--adb SERIAL --benchmark-binary PATH]
    tfprune arm-check A.tflite [B.tflite ...] --inputs mnist [--sysroot DIR]
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np


def _load_inputs(source, input_shape, limit, split=0):
    """Float samples from a .npy file or a built-in dataset name (split 0 = train, 1 = test), shaped for the model."""
    if source in ("digits", "mnist"):
        from tfprune import data

        x, _ = (data.load_digits() if source == "digits" else data.load_mnist())[split]
    else:
        path = Path(source)
        if not path.is_file():
            raise SystemExit(f"error: input file '{source}' not found (give a .npy file, 'digits' or 'mnist').")
        x = np.load(path)
    expected = tuple(input_shape[1:])
    if int(np.prod(x.shape[1:])) != int(np.prod(expected)):
        raise SystemExit(f"error: samples from '{source}' have shape {x.shape[1:]}, the model expects {expected}.")
    return x[:limit].reshape((-1, *expected)).astype("float32")


def _export(args):
    import tfprune
    from tfprune.deploy import export_tflite

    model = tfprune.load_model(args.model)
    quantize = None if args.quantize == "none" else args.quantize
    calibration = _load_inputs(args.calibration, model.inputs[0].shape, limit=500) if args.calibration else None
    report = export_tflite(model, args.output, quantize=quantize, representative_data=calibration,
                           sparse_encoding=args.sparse, float_io=args.float_io,
                           on_parity_failure="warn" if args.allow_mismatch else "raise")
    print(report.summary())
    if args.report:
        report.save_json(args.report)
        print(f"report: {args.report}")


def _bench(args):
    from tfprune.deploy.bench import benchmark_tflite, format_benchmark

    if args.adb is not None or args.benchmark_binary:
        if not args.benchmark_binary:
            raise SystemExit("error: --adb needs --benchmark-binary PATH (the benchmark_model binary for the device).")
        from tfprune.deploy.android import AdbBenchmark

        bench = AdbBenchmark(args.benchmark_binary, serial=args.adb or None)
        result = bench.run(args.models, num_threads=args.threads, runs=args.runs, warmup=args.warmup,
                           use_xnnpack=not args.no_xnnpack)
    else:
        result = benchmark_tflite(args.models, num_threads=args.threads, runs=args.runs, warmup=args.warmup,
                                  use_xnnpack=not args.no_xnnpack)
    print(format_benchmark(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"json: {args.json}")


def _arm_check(args):
    from tfprune.deploy import LiteRTModel
    from tfprune.deploy.aarch64 import LiteRTProcess, build_sysroot, compare_with_host

    runtime = LiteRTProcess.aarch64(build_sysroot(args.sysroot), cpu=args.cpu)
    results = []
    for model in args.models:
        x = _load_inputs(args.inputs, LiteRTModel.load(model).input["shape"], limit=args.samples, split=1)
        print(f"{model}: {len(x)} samples on x86 and on {runtime.name} ...", flush=True)
        result = compare_with_host(model, x, runtime, use_xnnpack=not args.no_xnnpack)
        print(f"  bit-identical outputs {result['raw_exact_match']:.2%}, max raw diff {result['max_raw_diff']:g}, "
              f"top-1 agreement {result['top1_agreement']:.2%}")
        results.append(result)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"json: {args.json}")
    if any(r["top1_agreement"] < 1.0 for r in results):
        raise RuntimeError("aarch64 and x86 disagree on some samples (see above).")


def build_parser():
    parser = argparse.ArgumentParser(prog="tfprune", description="Prune, export and benchmark Keras 3 models.")
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="convert a .keras model (pruned or not) to .tflite, verified")
    export.add_argument("model", help="a .keras file")
    export.add_argument("-o", "--output", required=True, help="the .tflite file to write")
    export.add_argument("--quantize", choices=["none", "dynamic", "float16", "int8"], default="int8")
    export.add_argument("--calibration", help="calibration inputs: a .npy file, 'digits' or 'mnist' (int8 needs it)")
    export.add_argument("--sparse", action="store_true", help="use TFLite sparse encoding where it loads and helps")
    export.add_argument("--float-io", action="store_true", help="int8 model with float32 inputs/outputs")
    export.add_argument("--allow-mismatch", action="store_true", help="warn instead of failing on low parity")
    export.add_argument("--report", help="write the export report as JSON here")
    export.set_defaults(func=_export)
    bench = sub.add_parser("bench", help="latency of .tflite models, side by side (LiteRT here, or a device over adb)")
    bench.add_argument("models", nargs="+", help=".tflite files")
    bench.add_argument("--threads", type=int, default=1)
    bench.add_argument("--runs", type=int, default=200)
    bench.add_argument("--warmup", type=int, default=20)
    bench.add_argument("--no-xnnpack", action="store_true", help="disable the default XNNPack delegate")
    bench.add_argument("--adb", nargs="?", const="", metavar="SERIAL", help="run on an Android device over adb")
    bench.add_argument("--benchmark-binary", metavar="PATH", help="the benchmark_model binary to push to the device")
    bench.add_argument("--json", help="write results as JSON here")
    bench.set_defaults(func=_bench)
    arm = sub.add_parser("arm-check", help="compare .tflite outputs on aarch64 LiteRT (under qemu-user) with x86")
    arm.add_argument("models", nargs="+", help=".tflite files")
    arm.add_argument("--inputs", required=True, help="test inputs: a .npy file, 'digits' or 'mnist' (test split)")
    arm.add_argument("--samples", type=int, default=1000, help="how many inputs to compare (default 1000)")
    arm.add_argument("--sysroot", default=".arm64-sysroot", help="aarch64 sysroot folder, built when missing")
    arm.add_argument("--cpu", default="cortex-a76", help="the CPU qemu emulates (default cortex-a76)")
    arm.add_argument("--no-xnnpack", action="store_true", help="disable the default XNNPack delegate on both sides")
    arm.add_argument("--json", help="write results as JSON here")
    arm.set_defaults(func=_arm_check)
    return parser


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, PermissionError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
