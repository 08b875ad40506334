"""Invokes a .tflite model between marks for the instruction-counting qemu plugin: the far end of `instructions.py`.

Started as a script by an emulated aarch64 Python that has only numpy and ai_edge_litert,
so it imports nothing else but its neighbour `litert_runner`:

    python instruction_runner.py MODEL.tflite INPUTS.npz RUNS WINDOWS [--no-xnnpack]

It calls the interpreter's native `Invoke` (not the Python wrapper's `invoke()`, whose checks cost
thousands of instructions per call) and marks, in order: an empty window (two marks in a row:
what marking costs), a window of RUNS calls of a native method that does nothing (`NumSubgraphs`:
what a call from Python costs), then WINDOWS windows of RUNS invokes, the inputs set once; and
prints `runs=RUNS`. Before that, it warms up with `WARMUP` no-op calls and RUNS + 2 invokes (the
first invoke prepares XNNPack, and Python specializes a call after a few runs). RUNS 0 picks as many invokes
as take about `WINDOW_SECONDS` here. The plugin (`qemu_plugin/count_instructions.c`) records its
instruction counter at every mark.
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


def main(argv):
    model_path, inputs_path, runs, windows, *flags = argv
    interpreter = interpreter_for(model_path, use_xnnpack="--no-xnnpack" not in flags)
    with np.load(inputs_path) as inputs:  # by tensor index
        for index in inputs.files:
            interpreter.set_tensor(int(index), inputs[index])
    native = interpreter._interpreter
    invoke, do_nothing = native.Invoke, native.NumSubgraphs
    invoke()  # prepares XNNPack: not timed
    start = time.perf_counter()
    invoke()
    runs = int(runs) or min(MAX_RUNS, max(1, round(WINDOW_SECONDS / (time.perf_counter() - start))))
    for _ in range(WARMUP):
        do_nothing()
    for _ in range(runs):  # a model slow enough for few runs has little to gain from more
        invoke()
    mark()
    mark()
    for _ in range(runs):
        do_nothing()
    mark()
    for _ in range(int(windows)):
        for _ in range(runs):
            invoke()
        mark()
    print(f"runs={runs}")

if __name__ == "__main__":
    main(sys.argv[1:])
