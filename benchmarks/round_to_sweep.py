"""Latency against channel count, one channel at a time: the steps that `round_to` avoids.

Single layers at shapes of MobileNetV2 (alpha 1.0, 96x96: 12x12 activations with 64 channels
around the blocks), converted to INT8 like a latency table's probes and measured with LiteRT on
this machine (1 thread, in turns of 10 runs), for every channel count from 8 to 160:

- expand: a 1x1 Conv2D from 64 channels to c;
- depthwise: a 3x3 DepthwiseConv2D over c channels;
- project: a 1x1 Conv2D from c channels to 64.

Latency rises in steps: the kernels work on tiles of channels, so a count inside a step costs what
the step's last count costs (one more channel adds less than half the mean cost of a channel), and pruning to it loses
accuracy the latency does not repay. For each `round_to` in 1, 2, 4, ..., 32 the share of its
multiples inside a step is reported; the smallest `round_to` with at most 10% of them inside a step
in every layer is what the device's INT8 kernels prefer (`tfprune.structured.channel_steps`, which
`LatencyTable.measure(round_to="auto")` runs over 8-48 channels). With `--arm`, the same
probes are also counted on emulated Cortex-A76 and A53 cores (instructions, under qemu).

Run: `python benchmarks/round_to_sweep.py [--runs 100] [--arm] [--reanalyse]`. Writes benchmarks/results/round_to_sweep.json
and round_to_sweep.png (about 2 minutes; with --arm, more).
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from tfprune.deploy import LocalLiteRT, QemuInstructions  # noqa: E402
from tfprune.deploy.aarch64 import find_sysroot  # noqa: E402
from tfprune.files import atomic_write  # noqa: E402
from tfprune.structured.channel_steps import inside_a_step, measure_steps, shares_inside_a_step, step_ends  # noqa: E402

RESULTS = Path(__file__).parent / "results"
COUNTS = range(8, 161)
SPATIAL, CHANNELS = 12, 64


def devices(arm, runs):
    found = [LocalLiteRT(num_threads=1, runs=runs, warmup=5)]
    if arm:
        sysroot = find_sysroot("auto")
        if sysroot is None:
            raise SystemExit("--arm needs ./.arm64-sysroot and qemu-aarch64: run `make arm-check` (as root) first.")
        found += [QemuInstructions(sysroot, cpu=cpu) for cpu in ("cortex-a76", "cortex-a53")]
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="timed invokes per probe, in turns of 10")
    parser.add_argument("--arm", action="store_true", help="also count instructions on emulated Cortex-A76/A53")
    parser.add_argument("--reanalyse", action="store_true",
                        help="judge the costs already in results/round_to_sweep.json again, without measuring")
    args = parser.parse_args()
    started = time.time()
    if args.reanalyse:
        summary = json.loads((RESULTS / "round_to_sweep.json").read_text())
        results = summary["devices"]
        for name, found in results.items():
            print(name)
            found.update(analysed(found["costs"]))
    else:
        results = {}
        for device in devices(args.arm, args.runs):
            begun = time.time()
            costs = measure_steps(device, "int8", counts=COUNTS, spatial=SPATIAL, channels=CHANNELS)
            results[device.name] = {"unit": device.unit, "settings": device.settings, "seconds": time.time() - begun,
                                    "costs": {kind: cost.tolist() for kind, cost in costs.items()}, **analysed(costs)}
        summary = {"benchmark": "round_to_sweep", "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
                   "shape": {"spatial": SPATIAL, "channels": CHANNELS}, "counts": list(COUNTS),
                   "devices": results, "seconds": time.time() - started}
    RESULTS.mkdir(exist_ok=True)
    atomic_write(RESULTS / "round_to_sweep.json", (json.dumps(summary, indent=2) + "\n").encode())
    plot(results, RESULTS / "round_to_sweep.png")


def analysed(costs):
    """The share of each round_to's multiples inside a step, per probe kind, and the preferred round_to (printed)."""
    shares = shares_inside_a_step(costs, COUNTS)
    preferred = step_ends(shares)
    for kind, share in shares.items():
        print(f"  {kind}: multiples inside a step " + ", ".join(f"round_to {r}: {v:.0%}" for r, v in share.items()))
    print(f"  smallest round_to with at most 10% of its multiples inside a step in every layer: {preferred}", flush=True)
    return {"shares_inside_a_step": shares, "preferred_round_to": preferred}


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.array(COUNTS)
    kinds = len(next(iter(results.values()))["costs"])
    figure, axes = plt.subplots(len(results), kinds, figsize=(5 * kinds, 3.6 * len(results)), squeeze=False)
    for row, (device, found) in zip(axes, results.items()):
        for ax, (kind, raw) in zip(row, found["costs"].items()):
            cost = np.array(raw) * (1e3 if found["unit"] == "ms" else 1e-6)
            ax.plot(counts, cost, lw=0.8, color="0.5", label="every count")
            for r, marker in ((8, "o"), (16, "s")):
                at = counts % r == 0
                ax.plot(counts[at], cost[at], marker, ms=3, ls="none", label=f"multiples of {r}")
            inside = inside_a_step(raw)
            ax.plot(counts[inside], cost[inside], "x", color="red", ms=2, ls="none", alpha=0.5, label="inside a step")
            ax.set(title=f"{kind}\n{device}", xlabel="channels c",
                   ylabel="µs (INT8, 1 thread)" if found["unit"] == "ms" else "million instructions")
            ax.title.set_fontsize(8)
            ax.legend(fontsize=6)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
