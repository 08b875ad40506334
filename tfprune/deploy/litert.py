"""Running .tflite models in the LiteRT interpreter (`ai_edge_litert`), with quantized I/O handled.

Example:

>>> model = LiteRTModel.load("model.tflite", num_threads=1)
>>> probabilities = model.predict(x_test)  # float in, float out, whatever the model's I/O types
"""

from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from tfprune.deploy.flatbuffer import is_tflite
from tfprune.deploy.litert_runner import op_resolver


class LiteRTModel:
    """A loaded .tflite model that runs float numpy batches one sample at a time."""

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
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    @classmethod
    def load(cls, path, **kwargs):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No .tflite file at '{path}'.")
        return cls(path.read_bytes(), name=str(path), **kwargs)

    def _quantize(self, x):
        dtype = self.input["dtype"]
        if dtype == np.float32:
            return x.astype(np.float32)
        scale, zero_point = self.input["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)

    def dequantize(self, y):
        """Raw outputs -> float outputs (unchanged when the model has float outputs)."""
        if self.output["dtype"] == np.float32:
            return y
        scale, zero_point = self.output["quantization"]
        return (y.astype(np.float32) - zero_point) * scale

    def smoke_test(self):
        """Runs one inference on zeros: some delegates only fail when first invoked. Returns self."""
        try:
            self.invoke(np.zeros(self.input["shape"], dtype=self.input["dtype"]))
        except (ValueError, RuntimeError) as error:
            raise RuntimeError(f"LiteRT could not run '{self.name}': {error}") from error
        return self

    def invoke(self, sample):
        """Runs one already-shaped (1, ...) input; returns the raw output."""
        self.interpreter.set_tensor(self.input["index"], sample)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"])

    def prepare(self, x):
        """One float sample (without batch axis) -> the model's input tensor (quantized if needed)."""
        return self._quantize(np.asarray(x)[None])

    def predict(self, x):
        """Float outputs for a float batch `x`, dequantized when the model has integer outputs."""
        outputs = [self.dequantize(self.invoke(self.prepare(sample))) for sample in np.asarray(x)]
        return np.concatenate(outputs, axis=0)
