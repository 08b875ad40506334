"""How many instructions an aarch64 CPU executes per inference of a .tflite model, counted under qemu-user.

No phone is needed: qemu-user runs LiteRT's real aarch64 kernels (XNNPack's NEON, dot-product
or not, chosen for the emulated CPU) in an aarch64 sysroot (`aarch64.build_sysroot`), and a
small TCG plugin (`qemu_plugin/count_instructions.c`, built here with gcc) counts every guest
instruction. The child script (`instruction_runner.py`) marks windows of invokes with a system
call the plugin records, so Python's start-up (about 1e9 instructions, varying by ±1M between
runs) and the cost of marking are left out exactly.

An instruction count is not a latency: emulation has no caches, memory bandwidth or pipelines,
and real cores retire several instructions per cycle at rates that differ by kernel. It is an
exact, repeatable measure of the work the kernels do on that CPU, which tracks latency where the
work dominates (see BENCHMARKS.md for how it tracks x86 latency here).

Example:

```python
sysroot = build_sysroot(".arm64-sysroot")
counts = count_instructions("pruned_int8.tflite", sysroot, cpu="cortex-a53")
counts["instructions_per_inference"], counts["spread"]
```
"""

import functools
import hashlib
import os
import re
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from tfprune.deploy.aarch64 import LiteRTProcess, require_tool
from tfprune.deploy.bench import random_sample
from tfprune.deploy.litert import LiteRTModel
from tfprune.deploy.versions import versions

INSTRUCTIONS_ARE_NOT_LATENCY = ("aarch64 instructions are counted under qemu-user: not a latency (no caches, "
                                "memory bandwidth or pipelines), the work the kernels do on that CPU.")
PLUGIN_SOURCE = Path(__file__).with_name("qemu_plugin") / "count_instructions.c"
RUNNER = Path(__file__).with_name("instruction_runner.py")  # run as a script by the guest's Python
# getpriority's system call number on each guest, the call the runner marks windows with
MARK_SYSCALLS = {"aarch64": 141, "x86_64": 140}


def device_name(cpu):
    """The name of the measuring device, as latency tables record it: instructions, not time."""
    return f"aarch64-{cpu}-qemu-instructions"


def build_plugin(dest_dir):
    """Compiles the counting plugin into `dest_dir`, once per version of its source; returns its path."""
    source = PLUGIN_SOURCE.read_bytes()
    plugin = Path(dest_dir) / f"count_instructions-{hashlib.sha256(source).hexdigest()[:12]}.so"
    if plugin.is_file():
        return plugin
    require_tool("gcc", "apt-get install gcc (make arm-check does)")
    plugin.parent.mkdir(parents=True, exist_ok=True)
    partial = plugin.with_name(f".{plugin.name}.{os.getpid()}")
    try:
        done = subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(partial), str(PLUGIN_SOURCE)],
                              capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"Building the qemu plugin failed:\n{done.stderr[-2000:]}")
        partial.replace(plugin)
    finally:
        partial.unlink(missing_ok=True)
    return plugin


def check_plugin_support(qemu):
    """Raises RuntimeError if the `qemu` user-mode binary cannot load TCG plugins (asked once per binary)."""
    require_tool(qemu, "apt-get install qemu-user (make arm-check does)")
    if not _lists_plugin_option(shutil.which(qemu)):
        raise RuntimeError(f"'{qemu}' was built without TCG plugin support, which counting instructions needs: "
                           "install a qemu-user with plugins (Debian 12's qemu-user 7.2 has them).")


@functools.cache
def _lists_plugin_option(qemu_path):
    return "-plugin" in subprocess.run([qemu_path, "-h"], capture_output=True, text=True).stdout


def count_instructions(tflite_path, sysroot, cpu="cortex-a76", runs=None, windows=5, use_xnnpack=True,
                       input_data=None, qemu="qemu-aarch64", timeout=3600):
    """Instructions executed per inference of a .tflite model by LiteRT on an emulated aarch64 `cpu`.

    Args:
        tflite_path: the model.
        sysroot: an aarch64 sysroot made by `tfprune.deploy.aarch64.build_sysroot`.
        cpu: the qemu CPU: "cortex-a76" (dot product: mid and high-end phones) or "cortex-a53"
            (no dot product: low-end phones). Not "max": on qemu 7.2 its SME makes XNNPack's
            INT8 results wrong.
        runs: invokes per counted window; None picks as many as fit in about 0.2 s of emulation
            (at least 1), after a warm-up window of as many.
        windows: counted windows; their spread says how repeatable the count is.
        use_xnnpack: False counts LiteRT's built-in kernels instead of the XNNPack delegate.
        input_data: one float sample (no batch axis; a list for several inputs); the same random
            sample as `benchmark_tflite` otherwise.

    Returns:
        A JSON-able dict: "instructions_per_inference" (the median over windows), "spread"
        ((max - min) / median over windows), "windows" (per-inference count of each), "runs",
        "marking_instructions" and "call_instructions" (what marking a window and calling
        native code from Python cost, both left out), "cpu", "device", "model", "xnnpack",
        "versions".
    """
    return count_instructions_of([tflite_path], sysroot, cpu, runs, windows, use_xnnpack, input_data, qemu,
                                 timeout)[0]


def count_instructions_of(tflite_paths, sysroot, cpu="cortex-a76", runs=None, windows=5, use_xnnpack=True,
                          input_data=None, qemu="qemu-aarch64", timeout=3600):
    """`count_instructions` of several models, counted one after the other in one emulated process (Python's
    start-up under qemu, about 1e9 instructions, is paid once); returns one dict per model."""
    if windows < 1 or (runs is not None and runs < 1):
        raise ValueError(f"need windows >= 1 and runs >= 1 or None (got windows={windows}, runs={runs}).")
    process = LiteRTProcess.aarch64(sysroot, qemu=qemu, cpu=cpu)
    check_plugin_support(qemu)
    plugin = build_plugin(Path(sysroot) / "plugins")
    counted = _run_counted(process, plugin, MARK_SYSCALLS["aarch64"], tflite_paths, input_data, runs, windows,
                           use_xnnpack, timeout)
    return [{"model": os.fspath(path), "cpu": cpu, "device": device_name(cpu), "xnnpack": use_xnnpack, **found,
             "versions": versions()} for path, found in zip(tflite_paths, counted)]


def _run_counted(process, plugin, mark_syscall, tflite_paths, input_data, runs, windows, use_xnnpack, timeout):
    """Runs the child script under `process` (a qemu command) with the plugin; returns the counts per model."""
    with tempfile.TemporaryDirectory(prefix="tfprune_count_") as tmp:
        counts = Path(tmp) / "counts.txt"
        if "," in f"{plugin}{counts}":
            raise ValueError(f"qemu's -plugin option cannot take the paths '{plugin}' and '{counts}', which hold a "
                             "comma: use a sysroot and TMPDIR without one.")
        models = []
        for index, path in enumerate(tflite_paths):
            model = LiteRTModel.load(path, use_xnnpack=False)
            prepared = model.prepare(random_sample(model) if input_data is None else input_data)
            tensors = prepared if isinstance(prepared, list) else [prepared]
            inputs = Path(tmp) / f"inputs{index}.npz"
            np.savez(inputs, **{str(detail["index"]): t for detail, t in zip(model.inputs, tensors)})
            models += [os.fspath(path), str(inputs)]
        args = [runs or 0, windows, *([] if use_xnnpack else ["--no-xnnpack"]), *models]
        try:
            done = process.run_script(RUNNER, [str(a) for a in args], timeout,
                                      emulator_options=["-plugin", f"{plugin},out={counts},mark={mark_syscall}"])
        except RuntimeError as error:
            if "Could not load plugin" in str(error):
                raise RuntimeError(f"qemu could not load the counting plugin, written for qemu's plugin API version 1 "
                                   f"(qemu 7.2, as in Debian 12): {error}") from error
            raise RuntimeError(f"Counting {', '.join(map(os.fspath, tflite_paths))}: {error}") from error
        marks = ([int(line.split()[1]) for line in counts.read_text().splitlines() if line.startswith("mark ")]
                 if counts.is_file() else [])
    said = [int(found) for found in re.findall(r"^runs=(\d+)$", done.stdout, re.M)]
    per_model = windows + 3
    if len(said) != len(tflite_paths) or len(marks) != per_model * len(tflite_paths):
        raise RuntimeError(f"Counting {len(tflite_paths)} model(s): the plugin recorded {len(marks)} marks (expected "
                           f"{per_model * len(tflite_paths)}) and the runner said the runs of {len(said)}; its stderr:"
                           f"\n{done.stderr[-2000:]}")
    return [_per_inference(marks[i * per_model:(i + 1) * per_model], runs) for i, runs in enumerate(said)]


def _per_inference(marks, runs):
    """Instructions per inference from one model's marks: empty window, call window, then the counted windows."""
    marking = marks[1] - marks[0]
    call = (marks[2] - marks[1] - marking) / runs
    per_window = [(end - start - marking) / runs - call for start, end in zip(marks[2:], marks[3:])]
    median = statistics.median(per_window)
    return {"instructions_per_inference": median, "spread": (max(per_window) - min(per_window)) / median,
            "windows": per_window, "runs": runs, "marking_instructions": marking, "call_instructions": call}


def add_instruction_counts(result, sysroot, cpu="cortex-a76", use_xnnpack=True):
    """Adds "aarch64_instructions" (and its "aarch64_spread") to every model of a `benchmark_tflite` result.

    Counts each model with `count_instructions` on the same random sample as the benchmark, printing
    progress; records the CPU in the result's settings.
    """
    names = ", ".join(Path(entry["path"]).name for entry in result["models"])
    print(f"counting aarch64 instructions ({cpu}, qemu): {names}", flush=True)
    counted = count_instructions_of([entry["path"] for entry in result["models"]], sysroot, cpu=cpu,
                                    use_xnnpack=use_xnnpack)
    for entry, found in zip(result["models"], counted):
        entry.update(aarch64_instructions=found["instructions_per_inference"], aarch64_spread=found["spread"])
    result["settings"]["aarch64"] = {"cpu": cpu, "device": device_name(cpu), "sysroot": os.fspath(sysroot),
                                     "note": INSTRUCTIONS_ARE_NOT_LATENCY}
