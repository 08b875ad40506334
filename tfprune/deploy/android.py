"""Benchmarking on Android/ARM devices with the official `benchmark_model` binary over adb.

`benchmark_model` is not on PyPI: build it or download it for your device's ABI, then
pass its path. tfprune pushes the binary and the model to the device, runs it, and
parses the output into the same shape as `benchmark_tflite`.

Example:

```python
bench = AdbBenchmark("benchmark_model", serial="R58M123")
result = bench.run(["dense.tflite", "pruned.tflite"], num_threads=4)
```
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

_TIMINGS = re.compile(
    r"Inference timings in us: Init: ([\d.]+), First inference: ([\d.]+), "
    r"Warmup \(avg\): ([\d.e+-]+), Inference \(avg\): ([\d.e+-]+)"
)
_STATS = re.compile(r"^(?:INFO: )?count=(\d+)((?: \w+=[\d.e+-]+)+)", re.MULTILINE)
_MEMORY_DELTA = re.compile(r"Memory footprint delta from the start of the tool \(MB\): init=([\d.]+) overall=([\d.]+)")
_PEAK = re.compile(r"[Pp]eak memory footprint \(MB\)[^:]*: ([\d.]+)")


def parse_benchmark_output(text):
    """Parses `benchmark_model` stdout into latency (ms), memory (MB) and per-op-type profiling."""
    timings = _TIMINGS.search(text)
    if not timings:
        raise ValueError(
            "benchmark_model output has no 'Inference timings in us' line: the run failed. Its output ends with:\n"
            + "\n".join(text.strip().splitlines()[-10:])
        )
    init_us, first_us, warmup_us, avg_us = (float(v) for v in timings.groups())
    stats = [dict(kv.split("=") for kv in m.group(2).split()) | {"count": m.group(1)} for m in _STATS.finditer(text)]
    steady = {k: float(v) for k, v in (stats[-1] if stats else {}).items()}
    result = {
        "init_ms": init_us / 1e3,
        "first_inference_ms": first_us / 1e3,
        "warmup_avg_ms": warmup_us / 1e3,
        "mean_ms": avg_us / 1e3,
        "median_ms": steady.get("median", avg_us) / 1e3,
        "p90_ms": None,
        "p99_ms": None,
        "min_ms": steady["min"] / 1e3 if "min" in steady else None,
        "max_ms": steady["max"] / 1e3 if "max" in steady else None,
        "std_ms": steady["std"] / 1e3 if "std" in steady else None,
        "runs": int(steady["count"]) if "count" in steady else None,
        "memory_mb": {},
        "ops": _parse_op_summary(text),
    }
    delta = _MEMORY_DELTA.search(text)
    if delta:
        result["memory_mb"].update(init_delta=float(delta.group(1)), overall_delta=float(delta.group(2)))
    peak = _PEAK.search(text)
    if peak:
        result["memory_mb"]["peak"] = float(peak.group(1))
    return result


def _parse_op_summary(text):
    """Rows of the 'Summary by node type' table (present with --enable_op_profiling=true)."""
    start = text.rfind("Summary by node type")  # the inference profile follows the init profile
    if start < 0:
        return []
    rows = []
    for line in text[start:].splitlines()[2:]:
        cells = line.split()
        if len(cells) < 7 or not cells[1].isdigit():
            break
        rows.append({"op": cells[0], "count": int(cells[1]), "avg_ms": float(cells[2]),
                     "percent": float(cells[3].rstrip("%")), "times_called": int(cells[6])})
    return rows


class AdbBenchmark:
    """Runs `benchmark_model` on a device over adb. `serial` picks a device when several are attached."""

    def __init__(self, benchmark_binary, serial=None, adb="adb", device_dir="/data/local/tmp/tfprune"):
        self.binary = Path(benchmark_binary)
        if not self.binary.is_file():
            raise FileNotFoundError(
                f"benchmark_model binary not found at '{self.binary}'. Build it from the LiteRT sources "
                "(//tflite/tools/benchmark:benchmark_model) for your device's ABI, or use a prebuilt one."
            )
        self.adb = shutil.which(adb)
        if self.adb is None:
            raise FileNotFoundError(
                f"'{adb}' not found on PATH. Install Android platform-tools (Debian: apt-get install adb) and "
                "enable USB debugging on the device."
            )
        self.serial = serial
        self.device_dir = device_dir

    def _run(self, *args, on_device=True):
        """Runs `adb [-s SERIAL] ARGS` (no serial for server commands such as `devices`); returns stdout."""
        target = ["-s", self.serial] if self.serial and on_device else []
        result = subprocess.run([self.adb, *target, *args], capture_output=True, text=True, timeout=600)
        if result.returncode:
            raise RuntimeError(f"adb {' '.join(args)} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}")
        return result.stdout

    def check_device(self):
        """Raises RuntimeError unless the chosen (or only) device is attached and authorized."""
        listed = [line.split() for line in self._run("devices", on_device=False).splitlines()[1:] if line.strip()]
        ready = [cells[0] for cells in listed if len(cells) > 1 and cells[1] == "device"]
        if self.serial and self.serial not in ready:
            raise RuntimeError(f"Device '{self.serial}' not found or not authorized; attached: {listed or 'none'}.")
        if not self.serial and len(ready) != 1:
            raise RuntimeError(
                f"{'No device' if not ready else 'Several devices'} attached ({ready}); connect one or pass a serial."
            )

    def benchmark_command(self, device_model, num_threads, runs, warmup, use_xnnpack, op_profiling):
        return [
            f"{self.device_dir}/benchmark_model", f"--graph={device_model}", f"--num_threads={num_threads}",
            f"--num_runs={runs}", f"--warmup_runs={warmup}", f"--use_xnnpack={str(use_xnnpack).lower()}",
            f"--enable_op_profiling={str(op_profiling).lower()}",
        ]

    def run(self, model_paths, num_threads=1, runs=100, warmup=10, use_xnnpack=True, op_profiling=True):
        """Pushes the binary and each model, runs them in turn and returns parsed results."""
        self.check_device()
        paths = [model_paths] if isinstance(model_paths, (str, os.PathLike)) else list(model_paths)
        self._run("shell", "mkdir", "-p", self.device_dir)
        self._run("push", str(self.binary), f"{self.device_dir}/benchmark_model")
        self._run("shell", "chmod", "755", f"{self.device_dir}/benchmark_model")
        models = []
        for path in paths:
            device_model = f"{self.device_dir}/{Path(path).name}"
            self._run("push", str(path), device_model)
            output = self._run("shell", *self.benchmark_command(device_model, num_threads, runs, warmup,
                                                                use_xnnpack, op_profiling))
            models.append({"path": str(path), "file_bytes": Path(path).stat().st_size, **parse_benchmark_output(output)})
        abi = self._run("shell", "getprop", "ro.product.cpu.abi").strip()
        return {
            "machine": {"device": self.serial or "default", "abi": abi},
            "settings": {"runtime": "benchmark_model", "num_threads": num_threads, "runs": runs, "warmup": warmup,
                         "use_xnnpack": use_xnnpack},
            "models": models,
        }
