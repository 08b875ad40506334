"""Probe models for latency tables: one Keras layer at one input shape, converted to .tflite.

A probe is `{"layer": serialized Keras layer, "input_shape": [batch, ..., channels], "path": where to write}`.
Its weights are random and its calibration data uniform: latency does not depend on the values.
`convert_probes` converts them with `TFLiteConverter.from_keras_model` (about 0.2 s each for INT8,
against seconds through SavedModel and parity checks) in one TensorFlow child process for all of
them (`python -m tfprune.deploy.probes SPEC.json`), under any Keras backend, its chatter captured.
A probe is not a user's model: nothing is verified but that it converts.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CALIBRATION_SAMPLES = 8


def convert_probes(probes, quantize):
    """Writes every probe's .tflite file (`quantize`: None, "float16" or "int8"), in a TensorFlow process."""
    with tempfile.TemporaryDirectory(prefix="tfprune_probes_") as folder:
        spec = Path(folder) / "spec.json"
        spec.write_text(json.dumps({"probes": probes, "quantize": quantize}))
        env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
        done = subprocess.run([sys.executable, "-m", __name__, str(spec)], capture_output=True, text=True, env=env)
        if done.returncode:
            raise RuntimeError(f"Converting latency probes in a TensorFlow process failed:\n{done.stderr[-3000:]}")


def _convert_all(probes, quantize):
    import keras
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for probe in probes:
        inputs = keras.Input(tuple(probe["input_shape"][1:]), batch_size=1)
        model = keras.Model(inputs, keras.saving.deserialize_keras_object(probe["layer"])(inputs))
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8":
            samples = rng.uniform(-1, 1, (CALIBRATION_SAMPLES, *probe["input_shape"][1:])).astype("float32")
            converter.representative_dataset = lambda samples=samples: ([sample[None]] for sample in samples)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = converter.inference_output_type = tf.int8
        Path(probe["path"]).write_bytes(converter.convert())


if __name__ == "__main__":
    spec = json.loads(Path(sys.argv[1]).read_text())
    _convert_all(spec["probes"], spec["quantize"])
