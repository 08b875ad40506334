"""Runs a .tflite model on raw input tensors and saves the raw outputs: the far end of `aarch64.py`.

Started as a script by another Python, possibly an emulated aarch64 one that has only
numpy and ai_edge_litert, so it imports nothing else (not even tfprune):

    python litert_runner.py MODEL.tflite INPUTS.npy OUTPUTS.npz [--no-xnnpack]

INPUTS.npy holds samples already in the model's input dtype, one per row of axis 0.
OUTPUTS.npz gets `outputs` (raw, stacked like the inputs) and `machine` (platform.machine()).
"""

import platform
import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType


def op_resolver(use_xnnpack):
    """The interpreter's op resolver: the default (XNNPack delegate) or the built-in kernels alone."""
    return OpResolverType.AUTO if use_xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES


def interpreter_for(model_path, use_xnnpack=True):
    """A one-thread interpreter of the model, its tensors allocated."""
    interpreter = Interpreter(model_path=model_path, num_threads=1, experimental_op_resolver_type=op_resolver(use_xnnpack))
    interpreter.allocate_tensors()
    return interpreter


def run(model_path, inputs, use_xnnpack=True):
    interpreter = interpreter_for(model_path, use_xnnpack)
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    outputs = []
    for sample in inputs:
        interpreter.set_tensor(input_index, sample[None])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(output_index)[0])
    return np.stack(outputs)


def main(argv):
    model_path, inputs_path, outputs_path, *flags = argv
    outputs = run(model_path, np.load(inputs_path), use_xnnpack="--no-xnnpack" not in flags)
    np.savez(outputs_path, outputs=outputs, machine=platform.machine())


if __name__ == "__main__":
    main(sys.argv[1:])
