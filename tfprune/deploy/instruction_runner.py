"""Invokes a .tflite model between marks for the instruction-counting qemu plugin: the far end of `instructions.py`.

Started as a script by an emulated aarch64 Python that has only numpy and ai_edge_litert,
so it imports nothing else but its neighbour `litert_runner`:

    python instruction_runner.py RUNS WINDOWS [--no-xnnpack] MODEL.tflite INPUTS.npz [MODEL INPUTS ...]

It calls the interpreter's native `Invoke` (not the Python wrapper's `invoke()`, whose checks cost
thousands of instructions per call) and marks, in order: an empty window (two marks in a row:
what marking costs), a window of RUNS calls of a native method that does nothing (`NumSubgraphs`:
what a call from Python costs), then WINDOWS windows of RUNS invokes, the inputs set once; and
prints `runs=RUNS`. Before that, it warms up with `WARMUP` no-op calls and RUNS + 2 invokes (the
first invoke prepares XNNPack, and Python specializes a call after a few runs). RUNS 0 picks as many
invokes as take about `WINDOW_SECONDS` here. Then the next model, in the same process: one emulated
start-up for all. The plugin (`qemu_plugin/count_instructions.c`) records its instruction counter at
every mark.
"""

import os
import sys
import time

import numpy as np
from litert_runner import interpreter_for

MARK_WHO = 0x7F1C0DE  # must match count_instructions.c; above any pid, so the call fails harmlessly
WINDOW_SECONDS = 0.2
MAX_RUNS = 1000
WARMUP = 20


def mark():
    """getpriority(PRIO_PROCESS, MARK_WHO): the system call the plugin records its count at."""
    try:
        os.getpriority(os.PRIO_PROCESS, MARK_WHO)
    except OSError:
        pass


def count(model_path, inputs_path, runs, windows, use_xnnpack):
    """Marks the windows of one model (see the module docstring); returns the runs per window."""
    interpreter = interpreter_for(model_path, use_xnnpack=use_xnnpack)
    with np.load(inputs_path) as inputs:  # by tensor index
        for index in inputs.files:
            interpreter.set_tensor(int(index), inputs[index])
    native = interpreter._interpreter
    invoke, do_nothing = native.Invoke, native.NumSubgraphs
    invoke()  # prepares XNNPack: not timed
    start = time.perf_counter()
    invoke()
    runs = runs or min(MAX_RUNS, max(1, round(WINDOW_SECONDS / (time.perf_counter() - start))))
    for _ in range(WARMUP):
        do_nothing()
    for _ in range(runs):  # a model slow enough for few runs has little to gain from more
        invoke()
    mark()
    mark()
    for _ in range(runs):
        do_nothing()
    mark()
    for _ in range(windows):
        for _ in range(runs):
            invoke()
        mark()
    return runs


def main(argv):
    runs, windows, *rest = argv
    flags = [arg for arg in rest if arg.startswith("--")]
    models = [arg for arg in rest if not arg.startswith("--")]
    for model_path, inputs_path in zip(models[::2], models[1::2]):
        print(f"runs={count(model_path, inputs_path, int(runs), int(windows), '--no-xnnpack' not in flags)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
