"""Where the time goes in MobileNetV2, before and after pruning: `profile_tflite` against whole-model latency.

keras.applications.MobileNetV2 (alpha 1.0, 96x96, 10 classes, random weights: latency only), dense,
pruned to `FlopsBudget(0.5)` and pruned uniformly (50% of every set, L2), shrunk and exported to
INT8. Each is profiled with LiteRT on this machine (1 thread, in turns of 10 runs) twice "in
context" (the first k operators against the first k-1) and once "alone" (each operator cut out):

- how closely the operators sum to the whole model (coverage), per method;
- how much a layer's figure moves between the two in-context runs (median over layers with at
  least 1% of the time);
- the time per operator type (those with at least 5% of the dense model's), dense against pruned,
  beside the FLOPs: which kinds of work pruning removes and which stay (depthwise convolutions).

With `--arm`, the in-context profile is also counted on an emulated Cortex-A76 (instructions, exact).

Run: `python benchmarks/op_profile.py [--runs 100] [--arm]`. Writes benchmarks/results/op_profile.json
and op_profile.png (dense against the FLOPs budget, the 20 costliest layers).
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

import tfprune  # noqa: E402
from tfprune.deploy import LocalLiteRT, QemuInstructions, export_tflite  # noqa: E402
from tfprune.deploy.aarch64 import find_sysroot  # noqa: E402
from tfprune.deploy.op_profile import format_profiles, plot_profiles, profile_tflite  # noqa: E402
from tfprune.files import atomic_write  # noqa: E402
from tfprune.structured.controller import ChannelController  # noqa: E402

RESULTS = Path(__file__).parent / "results"
ROUND_TO = 16  # what benchmarks/round_to_sweep.py measured this machine's INT8 kernels to prefer


def models():
    keras.utils.set_random_seed(0)
    dense = keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3), classes=10)
    uniform = tfprune.prune_channels(dense, tfprune.ConstantSparsity(0.5, 0), round_to=ROUND_TO)
    ChannelController(uniform).prune_to(0.5, step=0)
    budget = tfprune.prune_to_budget(dense, tfprune.FlopsBudget(0.5), round_to=ROUND_TO)
    return {"dense": dense, "flops_budget_0.5": tfprune.shrink(budget, verbose=False),
            "uniform_l2_0.5": tfprune.shrink(uniform, verbose=False)}


def by_op(profile):
    kinds = {}
    for op in profile.ops:
        kinds[op.op] = kinds.get(op.op, 0.0) + op.cost
    return kinds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="timed invokes per cut model, in turns of 10")
    parser.add_argument("--arm", action="store_true", help="also count the in-context profile on a Cortex-A76")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # untrained models on random data: parity warnings say nothing here
    started, result = time.time(), {}
    device = LocalLiteRT(num_threads=1, runs=args.runs, warmup=5)
    with tempfile.TemporaryDirectory() as folder:
        built = models()
        samples = np.random.default_rng(0).uniform(-1, 1, (16, 96, 96, 3)).astype("float32")
        paths, flops = [], {}
        for name, model in built.items():
            paths.append(Path(folder) / f"{name}.tflite")
            export_tflite(model, paths[-1], quantize="int8", representative_data=samples, parity_data=samples[:4],
                          on_parity_failure="warn", arm_sysroot=None)
            flops[name] = tfprune.model_cost(model).flops
        layer_names = [layer.name for layer in built["dense"].layers]
        runs = {}
        for label, method in (("in_context", "in_context"), ("in_context_again", "in_context"), ("alone", "alone")):
            begun = time.time()
            runs[label] = profile_tflite(paths, device, method=method, layer_names=layer_names, verbose=True)
            print(f"{label}: {time.time() - begun:.0f} s", flush=True)
        if args.arm:
            sysroot = find_sysroot("auto")
            if sysroot is None:
                raise SystemExit("--arm needs ./.arm64-sysroot and qemu-aarch64: run `make arm-check` (as root).")
            begun = time.time()
            runs["a76_instructions"] = profile_tflite(paths, QemuInstructions(sysroot, cpu="cortex-a76"),
                                                      layer_names=layer_names, verbose=True)
            print(f"a76_instructions: {time.time() - begun:.0f} s", flush=True)
    print(format_profiles(runs["in_context"], top=15))
    for number, name in enumerate(built):
        first, again = runs["in_context"][number].by_layer(), runs["in_context_again"][number].by_layer()
        whole = runs["in_context"][number].whole - runs["in_context"][number].overhead
        moved = [abs(again[layer] - cost) / cost for layer, cost in first.items() if cost > 0.01 * whole]
        result[name] = {
            "flops_ratio": flops[name] / flops["dense"],
            "coverage": {label: profiles[number].coverage for label, profiles in runs.items()},
            "whole": {label: profiles[number].whole for label, profiles in runs.items()},
            "median_layer_change_between_in_context_runs": float(np.median(moved)),
            "by_op": {label: by_op(profiles[number]) for label, profiles in runs.items()},
            "by_layer": {label: profiles[number].by_layer() for label, profiles in runs.items()},
        }
        print(f"{name}: FLOPs {result[name]['flops_ratio']:.3f}; operators sum to "
              + ", ".join(f"{share:.0%} ({label})" for label, share in result[name]["coverage"].items())
              + f"; layers move {result[name]['median_layer_change_between_in_context_runs']:.1%} between runs",
              flush=True)
    dense_ops = result["dense"]["by_op"]["in_context"]
    dense_total = sum(dense_ops.values())
    for name in list(built)[1:]:  # small operator types are within the noise of a difference: left out
        ratios = {op: result[name]["by_op"]["in_context"].get(op, 0.0) / cost for op, cost in dense_ops.items()
                  if cost >= 0.05 * dense_total}
        result[name]["by_op_ratio_to_dense"] = ratios
        print(f"{name}: time per operator type against dense (types with at least 5% of it): "
              + ", ".join(f"{op} {ratio:.2f} ({dense_ops[op] / dense_total:.0%} of dense)" for op, ratio in ratios.items()),
              flush=True)
    RESULTS.mkdir(exist_ok=True)
    summary = {"benchmark": "op_profile", "device": device.name, "settings": device.settings,
               "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}, "round_to": ROUND_TO,
               "models": result, "seconds": time.time() - started}
    atomic_write(RESULTS / "op_profile.json", (json.dumps(summary, indent=2) + "\n").encode())
    plot_profiles(runs["in_context"][:2], RESULTS / "op_profile.png", top=20)


if __name__ == "__main__":
    main()
