"""`export_tflite`: Keras 3 model -> verified .tflite file plus an export report.

The path that works for Keras 3 is SavedModel (`model.export`) then
`tf.lite.TFLiteConverter.from_saved_model`. Sparse encoding is only kept when the
result loads in the default LiteRT interpreter: XNNPack rejects sparse INT8 and
dynamic-range weights, and then tfprune falls back to dense storage and says so.
"""

import dataclasses
import gzip
import json
import os
import tempfile
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfprune.api import strip_pruning
from tfprune.controller import pruning_wrappers
from tfprune.deploy.flatbuffer import inspect_tflite
from tfprune.deploy.litert import LiteRTModel

QUANTIZE_MODES = (None, "dynamic", "float16", "int8")


@dataclasses.dataclass
class ExportReport:
    """What was written, how big it is, what it contains and how well it matches Keras."""

    path: str
    quantize: str | None
    file_bytes: int
    gzip_bytes: int
    sparse_encoding: str
    ops: list
    integer_only: bool
    float_ops: list
    tensors: list
    parity: dict | None = None
    notes: list = dataclasses.field(default_factory=list)

    def to_dict(self):
        return dataclasses.asdict(self)

    def save_json(self, path):
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def summary(self):
        lines = [f"{self.path}: {self.file_bytes:,} bytes ({self.gzip_bytes:,} gzipped), quantize={self.quantize}, "
                 f"sparse encoding: {self.sparse_encoding}"]
        if self.parity:
            p = self.parity
            lines.append(f"  parity on {p['samples']} samples: top-1 agreement {p['top1_agreement']:.2%}, "
                         f"max |diff| {p['max_abs_diff']:.4f}, mean |diff| {p['mean_abs_diff']:.5f}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _calibration_samples(representative_data, input_shape, limit):
    """Float32 samples (each with a batch axis of 1) from an array, tf.data.Dataset or generator."""
    if isinstance(representative_data, tf.data.Dataset):
        batches = (b[0] if isinstance(b, (tuple, list)) else b for b in representative_data.as_numpy_iterator())
    elif isinstance(representative_data, np.ndarray):
        batches = iter([representative_data])
    elif hasattr(representative_data, "__iter__") or callable(representative_data):
        source = representative_data() if callable(representative_data) else representative_data
        batches = (np.asarray(b[0] if isinstance(b, (tuple, list)) else b) for b in source)
    else:
        raise TypeError(
            f"`representative_data` must be a numpy array, a tf.data.Dataset or a generator of input batches, "
            f"got {type(representative_data).__name__}."
        )
    samples = []
    expected = tuple(input_shape[1:])
    for batch in batches:
        batch = np.asarray(batch)
        if batch.shape == expected:
            batch = batch[None]
        if tuple(batch.shape[1:]) != expected:
            raise ValueError(
                f"Calibration data has samples of shape {tuple(batch.shape[1:])} but the model expects {expected} "
                "(without the batch axis). Pass inputs shaped like the model's input."
            )
        if not np.issubdtype(batch.dtype, np.number):
            raise ValueError(f"Calibration data must be numeric, got dtype {batch.dtype}.")
        samples += [s[None].astype(np.float32) for s in batch]
        if len(samples) >= limit:
            break
    if not samples:
        raise ValueError("`representative_data` is empty: INT8 calibration needs at least one input sample.")
    return samples[:limit]


def _check_writable(path):
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"Cannot write '{path}': folder '{parent}' does not exist.")
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"Cannot write '{path}': folder '{parent}' is not writable.")


def _input_shape(model):
    shape = getattr(model, "inputs", None) and model.inputs[0].shape
    if shape is None:
        build_config = model.get_build_config() or {}  # subclassed: {"input_shape": (batch, ...)}
        shape = next(iter(build_config.values()), None)
    if shape is None:
        raise ValueError(f"Model '{model.name}' has no known input shape: call it on data once before exporting.")
    return (None, *tuple(shape)[1:])


def _saved_model(model, directory, input_shape):
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serve", lambda x: model(x, training=False), input_signature=[tf.TensorSpec(input_shape, tf.float32)]
    )
    archive.write_out(directory, verbose=False)


def _convert(saved_model_dir, quantize, calibration, sparse, float_io):
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    optimizations = []
    if quantize:
        optimizations.append(tf.lite.Optimize.DEFAULT)
    if sparse:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    converter.optimizations = optimizations
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        converter.representative_dataset = lambda: ([s] for s in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if not float_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    try:
        return converter.convert()
    except Exception as error:  # the converter raises ConverterError and plain exceptions alike
        if quantize == "int8":
            raise ValueError(
                f"INT8 conversion failed: {error}\nSome op has no full-integer kernel. Export with "
                "quantize='dynamic' (int8 weights, float activations) or quantize=None (float32) instead."
            ) from error
        raise


def _parity(model, lite, x):
    expected = np.asarray(model.predict(x, verbose=0, batch_size=256))
    actual = lite.predict(x)
    diff = np.abs(expected.astype(np.float64) - actual)
    agreement = float(np.mean(np.argmax(expected, -1) == np.argmax(actual, -1)))
    return {"samples": int(len(x)), "top1_agreement": agreement,
            "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean())}


def _atomic_write(path, content):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_tflite(
    model,
    path,
    quantize=None,
    representative_data=None,
    sparse_encoding=False,
    float_io=False,
    parity_data=None,
    min_agreement=0.99,
    on_parity_failure="raise",
    num_calibration_samples=200,
):
    """Converts a Keras 3 model (pruned or plain) to .tflite, verifies it and writes it atomically.

    Args:
        model: a Keras model; pruning wrappers are stripped first.
        path: where to write the .tflite file. Nothing is written there unless all checks pass.
        quantize: None (float32), "dynamic", "float16" or "int8" (full integer).
        representative_data: calibration inputs for "int8": array, tf.data.Dataset or generator.
        sparse_encoding: store pruned weights in TFLite's sparse format when the result still
            loads in the default LiteRT interpreter and is smaller; otherwise fall back (see report notes).
        float_io: for "int8", keep float32 inputs/outputs instead of int8.
        parity_data: inputs to compare Keras and TFLite outputs on; defaults to the calibration data.
        min_agreement: minimum top-1 agreement between Keras and TFLite.
        on_parity_failure: "raise" (nothing written) or "warn".

    Returns:
        An `ExportReport`.

    Example:

    ```python
    report = tfprune.export_tflite(pruned, "model.tflite", quantize="int8", representative_data=x_train[:200])
    print(report.summary())
    ```
    """
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"`quantize` must be one of {QUANTIZE_MODES}, got {quantize!r}.")
    if on_parity_failure not in ("raise", "warn"):
        raise ValueError(f"`on_parity_failure` must be 'raise' or 'warn', got {on_parity_failure!r}.")
    if not isinstance(model, keras.Model):
        raise ValueError(f"export_tflite expects a Keras 3 model, got {type(model).__name__}.")
    path = Path(path)
    _check_writable(path)
    if pruning_wrappers(model):
        model = strip_pruning(model)
    input_shape = _input_shape(model)
    calibration = None
    if quantize == "int8":
        if representative_data is None:
            raise ValueError(
                "quantize='int8' needs `representative_data`: a few hundred typical inputs (e.g. x_train[:200]) "
                "to calibrate activation ranges."
            )
        calibration = _calibration_samples(representative_data, input_shape, num_calibration_samples)
    if parity_data is None and calibration is not None:
        parity_data = np.concatenate(calibration, axis=0)
    notes = []
    with tempfile.TemporaryDirectory() as saved_model_dir:
        _saved_model(model, saved_model_dir, input_shape)
        content = _convert(saved_model_dir, quantize, calibration, False, float_io)
        sparse_state = "off"
        if sparse_encoding:
            sparse_content = _convert(saved_model_dir, quantize, calibration, True, float_io)
            content, sparse_state = _choose_sparse(content, sparse_content, notes)
    lite = LiteRTModel(content, name=str(path)).smoke_test()
    info = inspect_tflite(content)
    parity = _parity(model, lite, np.asarray(parity_data, dtype=np.float32)) if parity_data is not None else None
    if parity and parity["top1_agreement"] < min_agreement:
        message = (f"TFLite/Keras top-1 agreement {parity['top1_agreement']:.2%} is below {min_agreement:.2%} "
                   f"on {parity['samples']} samples (max |diff| {parity['max_abs_diff']:.4f}). Calibrate with more "
                   "representative data, or export with quantize='dynamic' or None.")
        if on_parity_failure == "raise":
            raise ValueError(message + f" Nothing was written to '{path}'.")
        warnings.warn(message, stacklevel=2)
        notes.append(message)
    _atomic_write(path, content)
    return ExportReport(
        path=str(path), quantize=quantize, file_bytes=len(content), gzip_bytes=len(gzip.compress(content, 9)),
        sparse_encoding=sparse_state, ops=info["ops"], integer_only=info["integer_only"],
        float_ops=info["float_ops"], tensors=info["tensors"], parity=parity, notes=notes,
    )


def _choose_sparse(dense_content, sparse_content, notes):
    """Keeps the sparse encoding only if it is smaller and loads in the default interpreter."""
    if len(sparse_content) >= len(dense_content):
        notes.append(f"sparse encoding not smaller ({len(sparse_content):,} vs {len(dense_content):,} bytes): dropped.")
        return dense_content, "dropped (not smaller)"
    try:
        LiteRTModel(sparse_content, name="sparse candidate").smoke_test()
    except RuntimeError as error:
        notes.append(
            f"sparse encoding ({len(sparse_content):,} bytes vs {len(dense_content):,} dense) does not load in "
            f"the default LiteRT interpreter (XNNPack has no sparse path for it: {str(error).splitlines()[0][:160]}); "
            "wrote the dense encoding. Gzip the file for transfer instead: pruned zeros compress well."
        )
        return dense_content, "dropped (default interpreter cannot load it)"
    return sparse_content, "on"
