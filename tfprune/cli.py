"""The `tfprune` command: inspect and shrink Keras models, export them to TFLite, benchmark .tflite files.

    tfprune report MODEL.keras
    tfprune shrink MODEL.keras [-o OUT.keras]           (default MODEL.shrunk.keras)
    tfprune export MODEL.keras [-o OUT.tflite] --quantize int8 --calibration digits   (default MODEL.tflite)
    tfprune bench A.tflite [B.tflite ...] [--threads N] [--adb SERIAL --benchmark-binary PATH] [--profile]
    tfprune arm-check A.tflite [B.tflite ...] --inputs mnist [--sysroot DIR]

report, shrink and export take `--custom-objects my_layers.py` for models with custom classes.
Quiet by default: TensorFlow's and LiteRT's own log lines are dropped unless `--verbose`.
Keras and TensorFlow are imported only by the commands that read .keras files, not by bench or arm-check.
"""

import argparse
import contextlib
import dataclasses
import importlib
import importlib.util
import inspect
import json
import os
import sys
from pathlib import Path

import numpy as np

import tfprune


def _load_inputs(flag, source, input_shape, limit, split=0):
    """Samples for the option `flag` from a .npy file, a built-in dataset name (split 0 = train, 1 = test) or a
    TFDS dataset prepared on this machine ("tfds:NAME[:SPLIT]"), shaped for the model."""
    from tfprune import data

    try:
        if source.startswith("tfds:"):
            x = data.load_tfds_inputs(source[len("tfds:"):], limit)
        elif source in ("digits", "mnist"):
            x, _ = (data.load_digits() if source == "digits" else data.load_mnist())[split]
        elif Path(source).is_file():
            x = np.load(source)
        else:
            raise ValueError("no such file (give a .npy file, 'digits', 'mnist' or tfds:NAME[:SPLIT])")
    except (ValueError, OSError) as error:
        raise ValueError(f"{flag} {source}: {error}") from error
    expected = tuple(input_shape[1:])
    if int(np.prod(x.shape[1:])) != int(np.prod(expected)):
        raise ValueError(f"{flag} {source}: samples have shape {x.shape[1:]}, the model expects {expected}.")
    return x[:limit].reshape((-1, *expected)).astype("float32")


def _calibration(source, model):
    """Calibration inputs for `model`: as `_load_inputs`, or for several inputs an .npz of arrays named like them."""
    from tfprune.deploy.export import model_inputs

    inputs = model_inputs(model)
    if len(inputs) == 1:
        return _load_inputs("--calibration", source, inputs[0].shape, limit=500)
    names = [spec.keras_name for spec in inputs]
    if not (source.endswith(".npz") and Path(source).is_file()):
        raise ValueError(f"--calibration {source}: the model has {len(names)} inputs; give an .npz file with one "
                         f"array per input, named {', '.join(names)} (np.savez('cal.npz', {names[0]}=..., ...)).")
    with np.load(source) as arrays:
        missing = [name for name in names if name not in arrays]
        if missing:
            raise ValueError(f"--calibration {source}: no array for input(s) {', '.join(missing)}; it has "
                             f"{', '.join(arrays.files)}.")
        return {name: arrays[name][:500] for name in names}


def _custom_objects(sources):
    """Imports each module path or .py file (running its @register_keras_serializable decorators) and
    returns the Keras classes it defines, by name."""
    import keras

    found = {}
    for source in sources:
        if source.endswith(".py"):
            if not Path(source).is_file():
                raise FileNotFoundError(f"--custom-objects: no Python file at '{source}'.")
            spec = importlib.util.spec_from_file_location(Path(source).stem, source)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            try:
                module = importlib.import_module(source)
            except ImportError as error:
                raise ValueError(f"--custom-objects: cannot import module '{source}': {error}.") from error
        found.update({name: obj for name, obj in vars(module).items()
                      if inspect.isclass(obj) and issubclass(obj, (keras.layers.Layer, keras.Operation))})
    return found


def _load_model(path, custom_objects):
    """The Keras model in the file `path`, with all of tfprune's classes registered (the command defers that)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"No model file at '{path}': check the path.")
    tfprune.register_classes()  # TensorFlow is imported from here on
    from tfprune.api import MissingCustomClassError

    try:
        return tfprune.load_model(path, custom_objects=_custom_objects(custom_objects))
    except MissingCustomClassError as error:
        raise ValueError(f"'{path}' holds the custom class '{error.class_name}', which is not loaded: pass "
                         "--custom-objects with the module (my_package.layers) or Python file (layers.py) that "
                         "defines it.") from error


def _export(args):
    quantize = None if args.quantize == "none" else args.quantize
    if quantize == "int8" and not args.calibration:
        raise ValueError("--quantize int8 needs --calibration (a .npy file of typical inputs, an .npz with one array "
                         "per input, 'digits', 'mnist' or tfds:NAME[:SPLIT]).")
    model = _load_model(args.model, args.custom_objects)
    from tfprune.deploy import export_tflite

    calibration = _calibration(args.calibration, model) if args.calibration else None
    output = args.output or Path(args.model).with_suffix(".tflite")
    report = export_tflite(model, output, quantize=quantize, representative_data=calibration,
                           sparse_encoding=args.sparse, float_io=args.float_io, select_tf_ops=args.select_tf_ops,
                           arm_sysroot=args.arm_sysroot,
                           on_parity_failure="warn" if args.allow_mismatch else "raise")
    print(report.summary())
    if args.report:
        report.save_json(args.report)
        print(f"report: {args.report}")


def _report(args):
    model = _load_model(args.model, args.custom_objects)
    from tfprune.apply.wrapper import pruning_wrappers

    print(tfprune.format_report(tfprune.sparsity_report(model)))
    if pruning_wrappers(model):
        print(f"cost: {tfprune.model_cost(tfprune.strip_pruning(model))} (without the pruning wrappers' masks)")
    else:
        print(f"cost: {tfprune.model_cost(model)}")
        print("no pruning wrappers: sparsity above counts the weights' exact zeros.")


def _shrink(args):
    output = Path(args.output or Path(args.model).with_suffix(".shrunk.keras"))
    if output.suffix != ".keras":
        raise ValueError(f"-o {output}: the shrunk model is saved as a .keras file; give a name ending in .keras.")
    small = tfprune.shrink(_load_model(args.model, args.custom_objects))  # prints parameters and FLOPs before -> after
    from tfprune.files import atomic_save

    atomic_save(small, output)
    print(f"saved: {output}")


def _bench(args):
    from tfprune.deploy.bench import benchmark_tflite, format_benchmark

    if args.plot and not args.profile:
        raise SystemExit("error: --plot draws the per-layer profile: add --profile.")
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
    if args.arm is not None:
        from tfprune.deploy.aarch64 import build_sysroot
        from tfprune.deploy.instructions import add_instruction_counts

        add_instruction_counts(result, build_sysroot(args.arm), cpu=args.arm_cpu, use_xnnpack=not args.no_xnnpack)
    print(format_benchmark(result))
    if args.profile:
        result["profiles"] = _profile(args)
    if args.json:
        from tfprune.files import atomic_write

        atomic_write(args.json, (json.dumps(result, indent=2) + "\n").encode())
        print(f"json: {args.json}")


def _profile(args):
    """Per-layer costs of the models on the device `bench` measured them on (printed, plotted); as JSON."""
    from tfprune.deploy import devices
    from tfprune.deploy.op_profile import format_profiles, plot_profiles, profile_tflite

    use_xnnpack = not args.no_xnnpack
    if args.arm is not None:
        from tfprune.deploy.aarch64 import build_sysroot

        device = devices.QemuInstructions(build_sysroot(args.arm), cpu=args.arm_cpu, use_xnnpack=use_xnnpack)
    elif args.benchmark_binary:
        device = devices.AndroidDevice(args.benchmark_binary, serial=args.adb or None, num_threads=args.threads,
                                       runs=args.runs, warmup=args.warmup, use_xnnpack=use_xnnpack)
    else:
        device = devices.LocalLiteRT(num_threads=args.threads, runs=args.runs, warmup=args.warmup,
                                     use_xnnpack=use_xnnpack)
    profiles = profile_tflite(args.models, device, method=args.profile_method, verbose=True)
    print(format_profiles(profiles, top=args.top))
    if args.plot:
        plot_profiles(profiles, args.plot, top=args.top)
        print(f"plot: {args.plot}")
    return [dataclasses.asdict(profile) for profile in profiles]


def _arm_check(args):
    from tfprune.deploy import LiteRTModel
    from tfprune.deploy.aarch64 import LiteRTProcess, build_sysroot, compare_with_host

    runtime = LiteRTProcess.aarch64(build_sysroot(args.sysroot), cpu=args.cpu)
    results = []
    for model in args.models:
        x = _load_inputs("--inputs", args.inputs, LiteRTModel.load(model).input["shape"], limit=args.samples, split=1)
        print(f"{model}: {len(x)} samples on x86 and on {runtime.name} ...", flush=True)
        result = compare_with_host(model, x, runtime, use_xnnpack=not args.no_xnnpack)
        print(f"  bit-identical outputs {result['raw_exact_match']:.2%}, max raw diff {result['max_raw_diff']:g}, "
              f"top-1 agreement {result['top1_agreement']:.2%}")
        results.append(result)
    if args.json:
        from tfprune.files import atomic_write

        atomic_write(args.json, (json.dumps(results, indent=2) + "\n").encode())
        print(f"json: {args.json}")
    if any(r["top1_agreement"] < 1.0 for r in results):
        raise RuntimeError("aarch64 and x86 disagree on some samples (see above).")


class _DefaultsShown(argparse.HelpFormatter):
    """Appends "(default: X)" to the help of options that have a real default (not None or False)."""

    def _get_help_string(self, action):
        shown = action.default not in (None, False, [], argparse.SUPPRESS) and action.option_strings
        return f"{action.help} (default: {action.default})" if shown else action.help


def _add_model_arguments(command):
    command.add_argument("model", help="a .keras (or legacy .h5) file")
    command.add_argument("--custom-objects", nargs="+", default=[], metavar="MODULE_OR_FILE",
                         help="modules (my_package.layers) or Python files (layers.py) defining the model's custom "
                              "classes")


def build_parser():
    formatter = _DefaultsShown
    parser = argparse.ArgumentParser(prog="tfprune", description="Inspect, shrink, export and benchmark pruned Keras 3 models.",
                                     formatter_class=formatter)
    parser.add_argument("--version", action="version", version=f"tfprune {tfprune.__version__}")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's and LiteRT's own log lines")
    sub = parser.add_subparsers(dest="command", required=True)
    report = sub.add_parser("report", help="per-layer sparsity, parameters and FLOPs of a .keras model",
                            formatter_class=formatter)
    _add_model_arguments(report)
    report.set_defaults(func=_report)
    shrink = sub.add_parser("shrink", help="remove a .keras model's zero channels (after prune_channels)",
                            formatter_class=formatter)
    _add_model_arguments(shrink)
    shrink.add_argument("-o", "--output", help="the .keras file to write (default: MODEL.shrunk.keras beside it)")
    shrink.set_defaults(func=_shrink)
    export = sub.add_parser("export", help="convert a .keras model (pruned or not) to .tflite, verified",
                            formatter_class=formatter)
    _add_model_arguments(export)
    export.add_argument("-o", "--output", help="the .tflite file to write (default: MODEL.tflite beside it)")
    export.add_argument("--quantize", choices=["none", "dynamic", "float16", "int8"], default="int8",
                        help="none: float32; dynamic: int8 weights; float16; int8: full integer (needs --calibration)")
    export.add_argument("--calibration", help="calibration inputs: a .npy file (an .npz of arrays named like the "
                        "inputs, for several), 'digits', 'mnist' or a TFDS dataset prepared on this machine, "
                        "tfds:NAME[:SPLIT] (int8 needs it)")
    export.add_argument("--sparse", action="store_true", help="use TFLite sparse encoding where it loads and helps")
    export.add_argument("--arm-sysroot", default="auto", metavar="SYSROOT",
                        help="with --sparse: the aarch64 sysroot to run the sparse file in (XNNPack's sparse path "
                             "runs on ARM only); default: $TFPRUNE_ARM_SYSROOT or ./.arm64-sysroot if built")
    export.add_argument("--float-io", action="store_true", help="int8 model with float32 inputs/outputs")
    export.add_argument("--select-tf-ops", action="store_true",
                        help="keep ops without a TFLite kernel as TensorFlow ops (needs the Flex delegate; "
                             "written unverified)")
    export.add_argument("--allow-mismatch", action="store_true", help="warn instead of failing on low parity")
    export.add_argument("--report", help="write the export report as JSON here")
    export.set_defaults(func=_export)
    bench = sub.add_parser("bench", help="latency of .tflite models, side by side (LiteRT here, or a device over adb)",
                           formatter_class=formatter)
    bench.add_argument("models", nargs="+", help=".tflite files")
    bench.add_argument("--threads", type=int, default=1, help="interpreter threads")
    bench.add_argument("--runs", type=int, default=200, help="timed invocations per model, interleaved")
    bench.add_argument("--warmup", type=int, default=20, help="untimed invocations per model first")
    bench.add_argument("--no-xnnpack", action="store_true", help="disable the default XNNPack delegate")
    bench.add_argument("--adb", nargs="?", const="", metavar="SERIAL", help="run on an Android device over adb")
    bench.add_argument("--benchmark-binary", metavar="PATH", help="the benchmark_model binary to push to the device")
    bench.add_argument("--arm", nargs="?", const=".arm64-sysroot", metavar="SYSROOT",
                       help="also count the instructions aarch64 LiteRT executes per inference, under qemu-user, "
                            "with this aarch64 sysroot, built when missing (as make arm-check does); not a latency")
    bench.add_argument("--arm-cpu", default="cortex-a76", choices=["cortex-a76", "cortex-a53"],
                       help="the CPU qemu emulates for --arm: cortex-a76 (dot product) or cortex-a53 (none)")
    bench.add_argument("--profile", action="store_true",
                       help="also print where the time goes, per Keras layer: every operator measured on the same "
                            "device (LiteRT here, the phone of --adb, or the emulated CPU of --arm)")
    bench.add_argument("--profile-method", default="in_context", choices=["in_context", "alone"],
                       help="in_context: the model's first k operators against its first k-1; alone: each "
                            "operator cut out on its own")
    bench.add_argument("--top", type=int, default=25, help="layers shown by --profile (the costliest)")
    bench.add_argument("--plot", metavar="PNG", help="with --profile: a bar chart of the costliest layers here")
    bench.add_argument("--json", help="write results as JSON here")
    bench.set_defaults(func=_bench)
    arm = sub.add_parser("arm-check", help="compare .tflite outputs on aarch64 LiteRT (under qemu-user) with x86",
                         formatter_class=formatter)
    arm.add_argument("models", nargs="+", help=".tflite files")
    arm.add_argument("--inputs", required=True, help="test inputs: a .npy file, 'digits' or 'mnist' (test split)")
    arm.add_argument("--samples", type=int, default=1000, help="how many inputs to compare")
    arm.add_argument("--sysroot", default=".arm64-sysroot", help="aarch64 sysroot folder, built when missing")
    arm.add_argument("--cpu", default="cortex-a76", help="the CPU qemu emulates")
    arm.add_argument("--no-xnnpack", action="store_true", help="disable the default XNNPack delegate on both sides")
    arm.add_argument("--json", help="write results as JSON here")
    arm.set_defaults(func=_arm_check)
    return parser


@contextlib.contextmanager
def _native_logs_dropped():
    """Sends what TensorFlow and LiteRT's C++ code writes to stderr (file descriptor 2) to /dev/null;
    Python's own `sys.stderr` (errors, warnings) keeps writing to the terminal."""
    sys.stderr.flush()
    terminal = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    python_stderr = sys.stderr
    sys.stderr = os.fdopen(os.dup(terminal), "w", buffering=1)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(terminal, 2)
        sys.stderr.close()
        sys.stderr = python_stderr
        os.close(devnull)
        os.close(terminal)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.func is _export and "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "tensorflow"  # TFLite converts TensorFlow graphs; .keras files are backend-neutral
    if not args.verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with contextlib.nullcontext() if args.verbose else _native_logs_dropped():
            args.func(args)
    except (ValueError, OSError, RuntimeError) as error:  # the file and what to do, without a traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
