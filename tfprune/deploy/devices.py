"""Devices that measure what a .tflite model costs: what latency tables and budgets are built on.

Each device measures several files in one call (interleaved where that is how its numbers stay
comparable) and returns one `Measurement` per file, in the device's `unit`:

- `LocalLiteRT(num_threads=1)`: this machine's LiteRT, median milliseconds of interleaved runs;
- `AndroidDevice(binary, serial)`: a phone over adb running `benchmark_model`, median milliseconds;
- `QemuInstructions(sysroot, cpu)`: instructions per inference on an emulated aarch64 CPU, counted
  under qemu-user (`instructions.count_instructions`): the work, not a latency.

A device's `name` and `settings` say what was measured where, so that a table measured on one
device is never taken for another's.

Example:

```python
device = QemuInstructions(".arm64-sysroot", cpu="cortex-a53")
device.name  # 'aarch64-cortex-a53-qemu-instructions'
[m.cost for m in device.measure(["dense.tflite", "shrunk.tflite"])]
```
"""

import dataclasses
import hashlib
import platform
from pathlib import Path

from tfprune.deploy import instructions
from tfprune.deploy.android import AdbBenchmark
from tfprune.deploy.bench import benchmark_tflite
from tfprune.deploy.versions import versions


@dataclasses.dataclass(frozen=True)
class Measurement:
    """A file's cost on a device (in the device's unit) and its relative spread over repeats."""

    cost: float
    spread: float


class LocalLiteRT:
    """This machine's LiteRT interpreter: median milliseconds, the files taking turns of `consecutive` runs.

    In turns of 10 runs (after an untimed one) each file is measured in cache, as a deployed model
    that runs again and again is; run by run (`consecutive=1`), each run of one of many files starts
    with the others' weights in cache: on MobileNetV2 0.35 (96 px, INT8) measured beside its 130
    cut-out prefixes, the whole model read 0.34 ms instead of 0.23, and the prefixes' steps summed
    to 85-111% of it instead of 98-100% (`tfprune bench --profile`).
    `spread` is (p90 - median) / median of each file's timed runs.
    """

    unit = "ms"

    def __init__(self, num_threads=1, runs=100, warmup=10, use_xnnpack=True, consecutive=10):
        self.num_threads, self.runs, self.warmup, self.use_xnnpack = num_threads, runs, warmup, use_xnnpack
        self.consecutive = consecutive

    @property
    def name(self):
        return f"{platform.machine()}-{_cpu_model()}-litert"

    @property
    def settings(self):
        return {"num_threads": self.num_threads, "use_xnnpack": self.use_xnnpack, "consecutive": self.consecutive,
                "ai_edge_litert": versions()["ai_edge_litert"]}

    def measure(self, paths):
        result = benchmark_tflite(list(paths), num_threads=self.num_threads, runs=self.runs, warmup=self.warmup,
                                  use_xnnpack=self.use_xnnpack, consecutive=self.consecutive)
        return [Measurement(m["median_ms"], (m["p90_ms"] - m["median_ms"]) / m["median_ms"])
                for m in result["models"]]


class AndroidDevice:
    """A phone over adb, running LiteRT's `benchmark_model` (see `android.AdbBenchmark`): median milliseconds.

    `spread` is the standard deviation over the median that `benchmark_model` reports.
    """

    unit = "ms"

    def __init__(self, benchmark_binary, serial=None, num_threads=1, runs=100, warmup=10, use_xnnpack=True,
                 adb="adb"):
        self.benchmark = AdbBenchmark(benchmark_binary, serial=serial, adb=adb)
        self.serial, self.num_threads, self.runs, self.warmup = serial, num_threads, runs, warmup
        self.use_xnnpack = use_xnnpack

    @property
    def name(self):
        return f"android-{self.serial or 'default'}-benchmark_model"

    @property
    def settings(self):
        return {"num_threads": self.num_threads, "use_xnnpack": self.use_xnnpack,
                "benchmark_model": _digest(self.benchmark.binary)}

    def measure(self, paths):
        result = self.benchmark.run(list(paths), num_threads=self.num_threads, runs=self.runs, warmup=self.warmup,
                                    use_xnnpack=self.use_xnnpack, op_profiling=False)
        return [Measurement(m["median_ms"], (m["std_ms"] or 0.0) / m["median_ms"]) for m in result["models"]]


class QemuInstructions:
    """Instructions per inference of aarch64 LiteRT on an emulated `cpu` ("cortex-a76" or "cortex-a53").

    Not a latency: the work the kernels do on that CPU, exact and repeatable (spread over windows
    about 0.01%). See `instructions.INSTRUCTIONS_ARE_NOT_LATENCY`.
    """

    unit = "instructions"

    def __init__(self, sysroot, cpu="cortex-a76", use_xnnpack=True):
        self.sysroot, self.cpu, self.use_xnnpack = sysroot, cpu, use_xnnpack

    @property
    def name(self):
        return instructions.device_name(self.cpu)

    @property
    def settings(self):
        return {"use_xnnpack": self.use_xnnpack, "ai_edge_litert": versions()["ai_edge_litert"]}

    def measure(self, paths):
        counted = instructions.count_instructions_of(list(paths), self.sysroot, cpu=self.cpu,
                                                     use_xnnpack=self.use_xnnpack)
        return [Measurement(c["instructions_per_inference"], c["spread"]) for c in counted]


def _digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def _cpu_model():
    """The CPU's model name from /proc/cpuinfo (e.g. 'Intel(R) Xeon(R) Platinum 8488C'), else the processor field."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown-cpu"
