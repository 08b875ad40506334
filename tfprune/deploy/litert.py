"""Running .tflite models in the LiteRT interpreter (`ai_edge_litert`), with quantized I/O handled.

Inputs and outputs are taken in the order of the model's signature (`input_0`, `input_1`,
... and `output_0`, ... as `export_tflite` names them), which is the Keras order; the
interpreter's own tensor order may differ.

Example:

>>> model = LiteRTModel.load("model.tflite", num_threads=1)
>>> probabilities = model.predict(x_test)  # float in, float out, whatever the model's I/O types
>>> logits, score = two_head_model.predict([features, token_ids])  # several inputs and outputs
>>> embeddings = bert.predict({"token_ids": ids, "segment_ids": segments, "padding_mask": mask})  # by name
"""

import re
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from tfprune.deploy.flatbuffer import is_tflite
from tfprune.deploy.litert_runner import op_resolver


class LiteRTModel:
    """A loaded .tflite model that runs numpy batches one sample at a time.

    `inputs` and `outputs` hold the interpreter's tensor details in signature order, and
    `input_names` the signature's names of the inputs (a dict-input model's keys), sorted with
    their numbers read as numbers ("x2" before "x10", where Keras sorts "x10" first: pass a dict);
    `input` and `output` are the first of each, for single-input, single-output models.
    """

    def __init__(self, content, num_threads=1, use_xnnpack=True, name="model"):
        if not is_tflite(content):
            raise ValueError(f"'{name}' is not a TFLite model (no 'TFL3' identifier): corrupt, truncated or wrong file.")
        try:
            self.interpreter = Interpreter(
                model_content=content, num_threads=num_threads, experimental_op_resolver_type=op_resolver(use_xnnpack)
            )
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise RuntimeError(f"LiteRT could not load '{name}' (xnnpack={use_xnnpack}): {error}") from error
        self.name = name
        self.input_names, self.inputs, self.outputs = _signature_order(self.interpreter)
        self.input, self.output = self.inputs[0], self.outputs[0]

    @classmethod
    def load(cls, path, **kwargs):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No .tflite file at '{path}'.")
        return cls(path.read_bytes(), name=str(path), **kwargs)

    def smoke_test(self):
        """Runs one inference on zeros: some delegates only fail when first invoked. Returns self."""
        try:
            self._invoke([np.zeros(d["shape"], dtype=d["dtype"]) for d in self.inputs])
        except (ValueError, RuntimeError) as error:
            raise RuntimeError(f"LiteRT could not run '{self.name}': {error}") from error
        return self

    def prepare(self, sample):
        """One sample (without batch axis; a list of them for several inputs) -> the input tensor(s)."""
        if len(self.inputs) == 1:
            return _to_tensor(np.asarray(sample)[None], self.input)
        return [_to_tensor(np.asarray(s)[None], d) for s, d in zip(sample, self.inputs)]

    def invoke(self, prepared):
        """Runs already-prepared input tensor(s); returns the raw output (a list of them for several outputs)."""
        raw = self._invoke([prepared] if len(self.inputs) == 1 else prepared)
        return raw[0] if len(self.outputs) == 1 else raw

    def dequantize(self, raw, output=0):
        """Raw values of output number `output` -> floats (unchanged when that output is float)."""
        return _to_float(raw, self.outputs[output])

    def predict(self, x):
        """Float outputs for a batch `x` (for several inputs: a list of batches, or a dict by input name),
        dequantized as needed.

        Returns an array, or a list of arrays for several outputs.
        """
        if isinstance(x, dict):
            x = self._by_name(x)
        batches = [np.asarray(x)] if len(self.inputs) == 1 else [np.asarray(b) for b in x]
        if len(batches) != len(self.inputs):
            raise ValueError(f"'{self.name}' has {len(self.inputs)} inputs, got {len(batches)} batches.")
        per_output = [[] for _ in self.outputs]
        for i in range(len(batches[0])):
            raw = self._invoke([_to_tensor(b[i : i + 1], d) for b, d in zip(batches, self.inputs)])
            for collected, value, detail in zip(per_output, raw, self.outputs):
                collected.append(_to_float(value, detail))
        results = [np.concatenate(values, axis=0) for values in per_output]
        return results[0] if len(results) == 1 else results

    def _by_name(self, batches):
        missing, unknown = set(self.input_names) - set(batches), set(batches) - set(self.input_names)
        if missing or unknown:
            raise ValueError(f"'{self.name}' takes inputs named {self.input_names}; missing {sorted(missing)}, "
                             f"unknown {sorted(unknown)}.")
        return [batches[name] for name in self.input_names] if len(self.inputs) > 1 else batches[self.input_names[0]]

    def _invoke(self, tensors):
        if any(tuple(t.shape) != tuple(d["shape"]) for t, d in zip(tensors, self.inputs)):
            self._resize([t.shape for t in tensors])  # a model with a variable dimension, e.g. sequence length
        for tensor, detail in zip(tensors, self.inputs):
            self.interpreter.set_tensor(detail["index"], tensor)
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(d["index"]) for d in self.outputs]


    def _resize(self, shapes):
        for shape, detail in zip(shapes, self.inputs):
            self.interpreter.resize_tensor_input(detail["index"], list(shape), strict=True)
        self.interpreter.allocate_tensors()
        details = {d["index"]: d for d in self.interpreter.get_input_details() + self.interpreter.get_output_details()}
        self.inputs = [details[d["index"]] for d in self.inputs]
        self.outputs = [details[d["index"]] for d in self.outputs]
        self.input, self.output = self.inputs[0], self.outputs[0]


def _signature_order(interpreter):
    """Input names, input details and output details in signature order (input_0, input_1, ...; names sorted
    with their numbers read as numbers), else the interpreter's order and tensor names."""
    signatures = interpreter.get_signature_list()
    if not signatures:
        inputs = interpreter.get_input_details()
        return [d["name"] for d in inputs], inputs, interpreter.get_output_details()
    runner = interpreter.get_signature_runner(next(iter(signatures)))
    by_index = {d["index"]: d for d in interpreter.get_input_details() + interpreter.get_output_details()}

    def in_order(named):
        return sorted(named, key=lambda n: [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", n)])

    input_names = in_order(runner.get_input_details())
    outputs = runner.get_output_details()
    return (input_names, [by_index[runner.get_input_details()[n]["index"]] for n in input_names],
            [by_index[outputs[n]["index"]] for n in in_order(outputs)])


def _to_tensor(batch, detail):
    """A batch for one input: quantized for an int8/int16 input, cast for float and plain integer inputs."""
    dtype = detail["dtype"]
    scale, zero_point = detail["quantization"]
    if dtype == np.float32 or not scale:  # float, or integer ids kept as they are
        return batch.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(batch / scale + zero_point), info.min, info.max).astype(dtype)


def _to_float(raw, detail):
    scale, zero_point = detail["quantization"]
    if detail["dtype"] == np.float32 or not scale:
        return raw.astype(np.float32) if detail["dtype"] != np.float32 else raw
    return (raw.astype(np.float32) - zero_point) * scale
