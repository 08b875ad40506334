"""The channel counts a device's kernels prefer: latency rises in steps, one per tile of channels.

LiteRT's kernels (XNNPack's, on x86 and ARM) compute channels in tiles, so a layer's cost is a
staircase in its channel count: a count inside a step costs what the step's last count costs, and
pruning to it loses accuracy that the latency does not repay (`benchmarks/round_to_sweep.py`
plots it). `preferred_round_to` measures the staircase of three probe layers on a device: a 1x1
convolution's output channels, its input channels and a depthwise convolution's channels, for
every count from 8 to 48, and returns the smallest `round_to` (1, 2, 4, ..., 32) whose multiples
are step ends: at most 10% of them gain a channel for less than half the sweep's mean cost of a channel
(a staircase adds nothing inside a step; a straight line adds the mean). The answer is cached
per device, settings, conversion and runtime.

Example:

```python
round_to = preferred_round_to(LocalLiteRT(num_threads=1))   # 16 on this machine's AVX-512 INT8 kernels
pruned = tfprune.prune_to_budget(model, tfprune.FlopsBudget(0.5), round_to=round_to)
```
"""

import json
import tempfile
from pathlib import Path

import numpy as np

from tfprune.files import atomic_write, cache_folder, digest

COUNTS = range(8, 49)
CANDIDATES = (1, 2, 4, 8, 16, 32)
INSIDE = 0.5  # one more channel adding less than this share of the sweep's mean cost of a channel: inside a step
WASTEFUL_SHARE = 0.1  # of a round_to's multiples inside a step, at most
SPATIAL, CHANNELS = 12, 32


def preferred_round_to(device, quantize="int8", cache=True, verbose=True):
    """The smallest `round_to` whose multiples end the steps of `device`'s kernels (see the module docstring).

    Args:
        device: a `tfprune.deploy.devices` device.
        quantize: how the probes are converted: "int8", "float16" or None (float32), as the model will be.
        cache: True reads and writes ~/.cache/tfprune/latency ($TFPRUNE_CACHE); False measures again.
        verbose: print what is measured and found.
    """
    from tfprune.deploy.versions import versions

    key = {"what": "preferred_round_to", "device": device.name, "settings": device.settings, "quantize": quantize,
           "probes": [COUNTS.start, COUNTS.stop, SPATIAL, CHANNELS], "rule": [CANDIDATES, INSIDE, WASTEFUL_SHARE],
           "ai_edge_litert": versions()["ai_edge_litert"]}
    path = cache_folder("latency") / f"round_to-{digest(key)}.json"
    if cache and path.is_file():
        try:
            found = json.loads(path.read_text())
            if found["key"] == json.loads(json.dumps(key)):  # as JSON gives it back: tuples are lists
                return found["round_to"]
        except (OSError, ValueError, KeyError):  # unreadable: measured again
            pass
    costs = measure_steps(device, quantize, verbose=verbose)
    shares = shares_inside_a_step(costs)
    round_to = step_ends(shares)
    if verbose:
        worst = {r: max(share[r] for share in shares.values()) for r in CANDIDATES}
        print(f"channel steps on {device.name}: multiples of {round_to} end them (share of multiples inside a step: "
              + ", ".join(f"{r}: {share:.0%}" for r, share in worst.items()) + ")", flush=True)
    if cache:
        atomic_write(path, (json.dumps({"key": key, "round_to": round_to, "shares": shares,
                                        "costs": {kind: cost.tolist() for kind, cost in costs.items()}}) + "\n").encode())
    return round_to


def step_ends(shares):
    """The smallest candidate round_to with at most WASTEFUL_SHARE of its multiples inside a step in every probe
    kind (`shares` from `shares_inside_a_step`); the largest candidate if none."""
    return next((r for r in CANDIDATES if all(share[r] <= WASTEFUL_SHARE for share in shares.values())),
                CANDIDATES[-1])


def inside_a_step(cost):
    """For each count of a sweep of consecutive counts (but the last), whether one more channel adds less than
    INSIDE of the sweep's mean cost per channel."""
    cost = np.asarray(cost, dtype=np.float64)
    per_channel = (cost[-1] - cost[0]) / (len(cost) - 1)
    return np.append(np.diff(cost) < INSIDE * per_channel, False)


def shares_inside_a_step(costs, counts=COUNTS):
    """{probe kind: {round_to: share of its multiples among `counts` that are inside a step}}."""
    counts = np.asarray(counts)
    return {kind: {r: float(inside_a_step(cost)[counts % r == 0].mean()) for r in CANDIDATES}
            for kind, cost in costs.items()}


def measure_steps(device, quantize="int8", counts=COUNTS, spatial=SPATIAL, channels=CHANNELS, verbose=True):
    """{probe kind: costs over `counts`} of the three probe layers at `spatial` x `spatial`, the 1x1 convolutions
    from or to `channels` channels, on `device`."""
    import keras

    from tfprune.deploy.probes import convert_probes

    kinds = {
        f"1x1 conv outputs ({channels} -> c)": lambda c: (keras.layers.Conv2D(c, 1, name="probe"), channels),
        f"1x1 conv inputs (c -> {channels})": lambda c: (keras.layers.Conv2D(channels, 1, name="probe"), c),
        "depthwise 3x3": lambda c: (keras.layers.DepthwiseConv2D(3, padding="same", name="probe"), c),
    }
    with tempfile.TemporaryDirectory(prefix="tfprune_steps_") as folder:
        specs = []
        for make in kinds.values():
            for count in counts:
                layer, channels_in = make(count)
                specs.append({"layer": keras.saving.serialize_keras_object(layer),
                              "input_shape": [1, spatial, spatial, channels_in],
                              "path": str(Path(folder) / f"{len(specs)}.tflite")})
        if verbose:
            print(f"channel steps: converting {len(specs)} probes ({quantize or 'float32'}) and measuring them on "
                  f"{device.name}", flush=True)
        convert_probes(specs, quantize)
        measured = np.array([m.cost for m in device.measure([spec["path"] for spec in specs])])
    return {kind: measured[i * len(counts):(i + 1) * len(counts)] for i, kind in enumerate(kinds)}
