"""`export_tflite`: Keras 3 model -> verified .tflite file plus an export report.

The path that works for Keras 3 is SavedModel (`keras.export.ExportArchive`) then
`tf.lite.TFLiteConverter.from_saved_model`, with a signature that keeps every input's
dtype (integer ids stay integers) and names inputs `input_i` (or by their keys, for a model
that takes a dict) and outputs `output_i`, in Keras order. Recurrent layers are unrolled
over their (fixed) number of time steps first: a TFLite WHILE loop cannot be fully
quantized (the converter crashes), plain ops can. Under other Keras backends the model is
converted in a TensorFlow process (`tensorflow_process`): the same file, the same checks.
Sparse encoding is only kept when the result loads in the default LiteRT interpreter:
XNNPack rejects sparse INT8 and dynamic-range weights, and then tfprune falls back to
dense storage and says so. XNNPack's sparse inference runs only on ARM (x86 CPUs with AVX
switch it off), so a sparse file is also run by aarch64 LiteRT under qemu where an aarch64
sysroot exists (`aarch64.find_sysroot`), and refused if it fails there. Parity is judged by
`tfprune.deploy.parity`.
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
from tfprune.deploy import aarch64
from tfprune.deploy import parity as parity_lib
from tfprune.deploy.bench import random_sample
from tfprune.deploy.flatbuffer import inspect_tflite
from tfprune.deploy.litert import LiteRTModel
from tfprune.deploy.tensorflow_process import export_in_tensorflow
from tfprune.deploy.versions import versions
from tfprune.files import atomic_write
from tfprune.graph import compat
from tfprune.graph.rebuild import copy_layer, rebuild
from tfprune.graph.traverse import layers_in
from tfprune.messages import first_names
from tfprune.apply.wrapper import pruning_wrappers

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
    io: list = dataclasses.field(default_factory=list)
    parity: dict | None = None
    notes: list = dataclasses.field(default_factory=list)
    versions: dict = dataclasses.field(default_factory=dict)

    def to_dict(self):
        return dataclasses.asdict(self)

    def save_json(self, path):
        atomic_write(Path(path), (json.dumps(self.to_dict(), indent=2) + "\n").encode())

    def summary(self):
        lines = [f"{self.path}: {self.file_bytes:,} bytes ({self.gzip_bytes:,} gzipped), quantize={self.quantize}, "
                 f"sparse encoding: {self.sparse_encoding}"]
        lines += [f"  {entry}" for entry in self.io]
        if self.parity:
            lines.append(f"  parity on {self.parity['samples']} samples: "
                         f"{parity_lib.summary_line(self.parity['outputs'], self.parity['min_sqnr_db'])}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class _Input:
    """One model input as exported: signature name, shape (batch None) and dtype."""

    name: str
    keras_name: str
    shape: tuple
    dtype: str


def model_inputs(model):
    """How each input of `model` is exported, in `model.inputs` order: signature name, Keras name, shape, dtype.

    The signature names inputs `input_0`, `input_1`, ..., or by their keys for a model that takes
    a dict, `keras.Model({"numeric": a, "category": b}, ...)`; data for it is given by the same keys.
    """
    tensors = getattr(model, "inputs", None)
    if not tensors:  # subclassed: one input, from the build config {"input_shape": (batch, ...)}
        build_config = model.get_build_config() or {}
        shape = next(iter(build_config.values()), None)
        if shape is None:
            raise ValueError(f"Model '{model.name}' has no known input shape: call it on data once before exporting.")
        return [_Input("input_0", "input", (None, *tuple(shape)[1:]), "float32")]
    keys = _input_keys(model)
    names = keys or [f"input_{i}" for i in range(len(tensors))]
    return [_Input(name, keys[i] if keys else compat.producer(t).name, (None, *tuple(t.shape)[1:]),
                   keras.backend.standardize_dtype(t.dtype)) for i, (name, t) in enumerate(zip(names, tensors))]


def _input_keys(model):
    """The keys of a model that takes a flat dict of inputs, in `model.inputs` order (sorted); else None."""
    structure = model.input if compat.is_functional(model) else None
    if isinstance(structure, dict) and all(isinstance(t, keras.KerasTensor) for t in structure.values()):
        return sorted(structure)
    return None


def _as_called(model, flat):
    """One tensor or array per input (`model.inputs` order) in the structure `model` is called with.

    A dict for a model that takes a dict, a list for several inputs, the array itself for one.
    """
    if compat.is_functional(model):
        return keras.tree.pack_sequence_as(model.input, list(flat))
    return flat[0] if len(flat) == 1 else list(flat)


def _split_inputs(element, inputs, what):
    """The input arrays of one batch or dataset element: `x`, `[x1, x2]`, `{name: x}`, or `x` of an `(x, y)` pair."""
    if isinstance(element, dict):
        names = [spec.keras_name for spec in inputs]
        missing = [name for name in names if name not in element]
        unknown = sorted(set(element) - set(names))
        if missing or unknown:
            problems = ([f"lacks input(s) {missing}"] if missing else []) + (
                [f"has key(s) {unknown} that name no input"] if unknown else [])
            raise ValueError(f"`{what}` gives inputs by name, but {' and '.join(problems)}. The model's inputs are "
                             f"{names}: give one array per input, keyed by these names.")
        return [element[name] for name in names]
    if isinstance(element, (tuple, list)):
        first = element[0]
        if isinstance(first, dict) or (len(inputs) > 1 and isinstance(first, (tuple, list))):
            return _split_inputs(first, inputs, what)  # ({name: x}, y) or ((x1, x2), y)
        return [first] if len(inputs) == 1 else list(element)  # (x, y), [x] or [x1, x2]
    return [element]


def _samples(data, inputs, limit, what):
    """Up to `limit` samples from an array (a list, or a dict by name, of arrays for several inputs),
    tf.data.Dataset or generator.

    Returns one batch array per input (`inputs` order), cast to that input's dtype.
    """
    if isinstance(data, tf.data.Dataset):
        batches = data.as_numpy_iterator()
    elif isinstance(data, (np.ndarray, list, tuple, dict)):
        batches = iter([data])
    elif hasattr(data, "__iter__") or callable(data):
        batches = data() if callable(data) else data
    else:
        raise TypeError(f"`{what}` must be a numpy array (a list, or a dict by input name, of arrays for several "
                        f"inputs), a tf.data.Dataset or a generator of input batches, got {type(data).__name__}.")
    collected = [[] for _ in inputs]
    count = 0
    for batch in batches:
        arrays = _split_inputs(batch, inputs, what)
        if len(arrays) != len(inputs):
            raise ValueError(f"`{what}` gives {len(arrays)} arrays per batch; the model has {len(inputs)} inputs.")
        arrays = [np.asarray(a) for a in arrays]
        for spec, array in zip(inputs, arrays):
            if array.ndim == len(spec.shape) - 1:
                array = array[None]
            if not _fits(array.shape[1:], spec.shape[1:]) or not np.issubdtype(array.dtype, np.number):
                raise ValueError(
                    f"`{what}` has samples of shape {tuple(array.shape[1:])} ({array.dtype}) for input "
                    f"'{spec.keras_name}', which expects {spec.shape[1:]} ({spec.dtype}) without the batch axis."
                )
        if len({len(array) for array in arrays}) > 1:
            counts = ", ".join(f"{len(array)} for '{spec.keras_name}'" for spec, array in zip(inputs, arrays))
            raise ValueError(f"`{what}` gives different numbers of samples per input in one batch ({counts}): "
                             "every input needs one array row per sample.")
        for collected_input, array, spec in zip(collected, arrays, inputs):
            collected_input.append(array.astype(spec.dtype))
        count += len(arrays[0])
        if count >= limit:
            break
    if not count:
        raise ValueError(f"`{what}` is empty: it needs at least one input sample.")
    return [np.concatenate(c, axis=0)[:limit] for c in collected]


def _fits(shape, expected):
    """True if `shape` matches `expected`, where None in `expected` takes any size."""
    return len(shape) == len(expected) and all(e is None or s == e for s, e in zip(shape, expected))


def _check_writable(path):
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"Cannot write '{path}': folder '{parent}' does not exist.")
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"Cannot write '{path}': folder '{parent}' is not writable.")


def _is_recurrent(layer):
    return isinstance(layer, keras.layers.RNN) or (
        isinstance(layer, (keras.layers.Bidirectional, keras.layers.TimeDistributed))
        and _is_recurrent(getattr(layer, "forward_layer", None) or layer.layer)
    )


def _with_unroll(config):
    if isinstance(config, dict):
        return {key: True if key == "unroll" else _with_unroll(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_with_unroll(value) for value in config]
    return config


def _time_steps(layer):
    input_shape = (layer.get_build_config() or {}).get("input_shape")
    return input_shape[1] if input_shape and len(input_shape) > 2 else None


def _unrolled(layer):
    """A copy of `layer` with its recurrence unrolled (same weights), or a plain copy of a non-recurrent layer."""
    if not _is_recurrent(layer):
        return copy_layer(layer)
    new = type(layer).from_config(_with_unroll(layer.get_config()))
    new.build_from_config(layer.get_build_config())
    new.set_weights(layer.get_weights())
    return new


def _exportable(model, inputs, quantize, notes):
    """The model to convert and its input signature.

    Recurrent layers over a fixed number of time steps are unrolled in a copy: plain ops run in every
    mode. Over a variable number they stay a loop, exported with batch size 1, which float32, float16
    and dynamic range run; INT8 cannot (the converter crashes on a quantized loop).
    """
    recurrent = [layer for layer in layers_in(model) if _is_recurrent(layer)]
    if not recurrent:
        return model, inputs
    names = ", ".join(layer.name for layer in recurrent)
    if all(_time_steps(layer) is not None for layer in recurrent):
        notes.append(f"recurrent layers {names} unrolled over their time steps: TFLite runs them as plain ops in "
                     "the default interpreter, in every quantization mode (no Flex delegate needed).")
        return rebuild(model, _unrolled), inputs
    if quantize == "int8":
        raise ValueError(
            f"Recurrent layers {names} run over a variable number of time steps, which TFLite keeps as a loop, "
            "and a loop cannot be fully quantized. Build the model with a fixed length, keras.Input((time_steps, "
            "features)), to export INT8 (the layers are then unrolled), or export with quantize='dynamic'."
        )
    notes.append(f"recurrent layers {names} run over a variable number of time steps: exported as a loop with "
                 "batch size 1 (feed one sequence per call; any length).")
    return model, [dataclasses.replace(spec, shape=(1, *spec.shape[1:])) for spec in inputs]


def _saved_model(model, directory, inputs):
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(*tensors):
        outputs = keras.tree.flatten(model(_as_called(model, tensors), training=False))
        return {f"output_{i}": output for i, output in enumerate(outputs)}

    archive.add_endpoint(
        "serve", serve, input_signature=[tf.TensorSpec(i.shape, i.dtype, name=i.name) for i in inputs]
    )
    archive.write_out(directory, verbose=False)


def _convert(saved_model_dir, quantize, calibration, sparse, float_io, inputs, select_tf_ops=False):
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
        converter.representative_dataset = lambda: (
            {spec.name: batch[i : i + 1] for spec, batch in zip(inputs, calibration)}
            for i in range(len(calibration[0]))
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if not float_io:  # float inputs and outputs become int8; integer inputs (ids) stay as they are
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    if select_tf_ops:  # ops without a TFLite kernel stay TensorFlow ops, run by the Flex delegate
        builtins = tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if quantize == "int8" else tf.lite.OpsSet.TFLITE_BUILTINS
        converter.target_spec.supported_ops = [builtins, tf.lite.OpsSet.SELECT_TF_OPS]
    with warnings.catch_warnings():  # the converter calibrates with tf.lite.Interpreter, which warns of itself
        warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
        return converter.convert()


def _explained(error, model, quantize, select_tf_ops):
    """A ValueError saying why the conversion of `model` failed and what to do, or None if there is nothing to add."""
    missing = _ops_without_kernel(error)
    if missing and not select_tf_ops:
        where = "; ".join(f"{op} at {first_names(places)}" for op, places in missing.items())
        return ValueError(
            f"Conversion failed: op(s) {', '.join(missing)} have no TFLite kernel ({where}; TensorFlow name scopes, "
            f"which hold the Keras layer names). {_plain_tensorflow_verdict(model, quantize)}Pass select_tf_ops=True "
            "(CLI: --select-tf-ops) to keep them as TensorFlow ops; the model then needs the Flex delegate where it "
            "runs."
        )
    if quantize == "int8":
        return ValueError(
            f"INT8 conversion failed: {str(error).strip()[:2000]}\nSome op has no full-integer kernel. "
            "quantize='dynamic' (int8 weights, float activations) keeps such ops in float."
        )
    return None


def _ops_without_kernel(error):
    """{op: [where, ...]} for the TensorFlow ops the converter found no TFLite kernel for, from its error data."""
    missing = {}
    for item in getattr(error, "errors", []):  # a ConverterError's ConverterErrorData, one per failing op
        if item.error_code == item.ERROR_NEEDS_FLEX_OPS:
            where = item.location.call[0].name.split("@")[0] if item.location.call else "an unnamed place"
            missing.setdefault(item.operator.name.removeprefix("tf."), []).append(where)
    return missing


def _plain_tensorflow_verdict(model, quantize):
    """Whether TensorFlow alone, without tfprune, converts `model` (Keras `model.export`, then the converter)."""
    how = "Keras model.export(), then tf.lite.TFLiteConverter.from_saved_model, float32, builtin ops"
    with tempfile.TemporaryDirectory() as directory:
        try:
            model.export(directory, format="tf_saved_model", verbose=False)
            tf.lite.TFLiteConverter.from_saved_model(directory).convert()
        except Exception as error:  # the converter raises ConverterError and plain exceptions alike
            missing = _ops_without_kernel(error)
            return (f"TensorFlow alone fails on this model too ({how}: no kernel for {', '.join(missing)}): a "
                    "TFLite limit, not tfprune's. " if missing else "")
    if quantize is None:
        return f"TensorFlow alone converts this model ({how}): please report it to tfprune. "
    return f"TensorFlow alone converts this model in float32 ({how}): the failure comes with quantize='{quantize}'. "


def _io_description(lite, inputs):
    """What each input and output became, e.g. "input 'ids' (int32): int32 (kept integer, not quantized)"."""
    return [f"input '{spec.keras_name}' ({spec.dtype}): "
            f"{_tensor_kind(lite.inputs[lite.input_names.index(spec.name)])}" for spec in inputs] + [f"output_{i}: {_tensor_kind(detail)}" for i, detail in enumerate(lite.outputs)]


def _tensor_kind(detail):
    dtype = np.dtype(detail["dtype"]).name
    scale, zero_point = detail["quantization"]
    if scale:
        return f"{dtype}, quantized (scale {scale:.4g}, zero point {zero_point})"
    if np.issubdtype(np.dtype(detail["dtype"]), np.integer):
        return f"{dtype} (kept integer, not quantized)"
    return dtype


def _keras_outputs(model, x):
    """The model's outputs on `x` (one batch per input), as a flat list: what every TFLite candidate must match."""
    return keras.tree.flatten(model.predict(_as_called(model, x), verbose=0, batch_size=256))


def _parity(expected, lite, x, inputs):
    """Parity metrics of `lite` against the Keras outputs `expected` on `x` (one batch per input, `inputs` order)."""
    actual = lite.predict({spec.name: batch for spec, batch in zip(inputs, x)})  # by name: orders differ
    actual = actual if isinstance(actual, list) else [actual]
    return {
        "samples": int(len(x[0])),
        "outputs": {f"output_{i}": parity_lib.output_metrics(e, a, detail["quantization"][0])
                    for i, (e, a, detail) in enumerate(zip(expected, actual, lite.outputs))},
    }


def export_tflite(
    model,
    path,
    quantize=None,
    representative_data=None,
    sparse_encoding=False,
    float_io=False,
    parity_data=None,
    min_agreement=0.99,
    min_sqnr_db=None,
    on_parity_failure="raise",
    num_calibration_samples=200,
    select_tf_ops=False,
    arm_sysroot="auto",
):
    """Converts a Keras 3 model (pruned or plain) to .tflite, verifies it and writes it atomically.

    Args:
        model: a Keras model, with any number of inputs and outputs; pruning wrappers are stripped first.
        path: where to write the .tflite file. Nothing is written there unless all checks pass.
        quantize: None (float32), "dynamic", "float16" or "int8" (full integer).
        representative_data: calibration inputs for "int8": an array (a list of arrays for several
            inputs, or a dict of them by input name), a tf.data.Dataset or a generator of batches
            (`(x, y)` pairs are fine). A model that takes a dict is exported with its inputs named
            by their keys.
        sparse_encoding: store pruned weights in TFLite's sparse format when the result still
            loads in the default LiteRT interpreter and is smaller; otherwise fall back (see report notes).
            Where XNNPack's sparse path runs (aarch64), it must also run and reproduce the x86 outputs:
            see `arm_sysroot`.
        float_io: for "int8", keep float32 inputs/outputs instead of int8. Integer inputs
            (token ids) are never quantized, in any mode.
        parity_data: inputs to compare Keras and TFLite outputs on; defaults to the calibration data.
        min_agreement: minimum top-1 agreement, on the samples where top-1 means something
            (see `tfprune.deploy.parity`).
        min_sqnr_db: minimum signal-to-quantization-noise ratio of every output; default per
            mode, `parity.MIN_SQNR_DB`.
        on_parity_failure: "raise" (nothing written) or "warn".
        select_tf_ops: keep ops that have no TFLite kernel as TensorFlow ops. Such a model needs the
            Flex delegate, which the LiteRT interpreter here lacks: it is then written unverified, and
            the report says so.
        arm_sysroot: where a sparse encoding is checked on aarch64 LiteRT (Cortex-A76 under qemu-user), the
            only place XNNPack runs sparse kernels: "auto" uses $TFPRUNE_ARM_SYSROOT or ./.arm64-sysroot
            when `make arm-check` has built it (else the report notes the file was checked on x86 only),
            a path requires that sysroot, None skips the check.

    Returns:
        An `ExportReport`.

    Example:

    ```python
    report = tfprune.export_tflite(pruned, "model.tflite", quantize="int8", representative_data=x_train[:200])
    print(report.summary())
    # A model built as keras.Model({"numeric": a, "category": b}, ...):
    tfprune.export_tflite(wide_and_deep, "wd.tflite", quantize="int8",
                          representative_data={"numeric": numeric[:200], "category": category[:200]})
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
    if sparse_encoding and arm_sysroot not in ("auto", None):
        aarch64.check_sysroot(arm_sysroot)
    if pruning_wrappers(model):
        model = strip_pruning(model)
    inputs = model_inputs(model)
    calibration = None
    if quantize == "int8":
        if representative_data is None:
            raise ValueError(
                "quantize='int8' needs `representative_data`: a few hundred typical inputs (e.g. x_train[:200]) "
                "to calibrate activation ranges."
            )
        calibration = _samples(representative_data, inputs, num_calibration_samples, "representative_data")
    x_parity = calibration if parity_data is None else _samples(parity_data, inputs, 10**9, "parity_data")
    if keras.backend.backend() != "tensorflow":  # TFLite converts TensorFlow graphs
        expected = _keras_outputs(model, x_parity) if x_parity is not None else None
        return export_in_tensorflow(model, path, calibration, x_parity, inputs, expected, quantize=quantize,
                                    sparse_encoding=sparse_encoding, float_io=float_io, min_agreement=min_agreement,
                                    min_sqnr_db=min_sqnr_db, on_parity_failure=on_parity_failure,
                                    num_calibration_samples=num_calibration_samples, select_tf_ops=select_tf_ops,
                                    arm_sysroot=None if arm_sysroot is None else os.fspath(arm_sysroot))
    notes = []
    exportable, signature = _exportable(model, inputs, quantize, notes)
    with tempfile.TemporaryDirectory() as saved_model_dir:
        _saved_model(exportable, saved_model_dir, signature)
        try:
            content = _convert(saved_model_dir, quantize, calibration, False, float_io, inputs, select_tf_ops)
        except Exception as error:  # the converter raises ConverterError and plain exceptions alike
            explained = _explained(error, model, quantize, select_tf_ops)
            if explained is None:
                raise
            raise explained from error
        info = inspect_tflite(content)
        flex_ops = sorted(op for op in set(info["ops"]) if op.startswith("CUSTOM:Flex"))
        sparse_state = "off"
        if sparse_encoding and not flex_ops:
            sparse_content = _convert(saved_model_dir, quantize, calibration, True, float_io, inputs)
            content, sparse_state = _choose_sparse(content, sparse_content, notes, quantize, x_parity, arm_sysroot)
            if sparse_state == "on":
                info = inspect_tflite(content)
        if flex_ops:
            notes.append(f"holds TensorFlow ops ({', '.join(op[len('CUSTOM:Flex'):] for op in flex_ops)}): needs the "
                         "Flex delegate where it runs (Android: org.tensorflow:tensorflow-lite-select-tf-ops). Not "
                         "verified: the LiteRT interpreter here has no Flex delegate.")
        lite = None if flex_ops else LiteRTModel(content, name=str(path)).smoke_test()
        expected = _keras_outputs(model, x_parity) if x_parity is not None and lite else None
        parity = _parity(expected, lite, x_parity, inputs) if expected is not None else None
        failed = parity_lib.failures(parity["outputs"], quantize, min_agreement, min_sqnr_db) if parity else []
        if parity:
            floor = parity_lib.sqnr_floor(quantize, min_sqnr_db)
            parity.update(passed=not failed, min_sqnr_db=floor, sqnr_rules={
                name: parity_lib.sqnr_rule(metrics, floor) for name, metrics in parity["outputs"].items()})
        if failed:
            message = (f"The TFLite model does not reproduce Keras on {parity['samples']} samples: "
                       f"{'; '.join(failed)}. "
                       f"{_advice(quantize, calibration, saved_model_dir, inputs, expected, x_parity, min_agreement)}")
            if on_parity_failure == "raise":
                raise ValueError(message + f" Nothing was written to '{path}'.")
            warnings.warn(message, stacklevel=2)
            notes.append(message)
    atomic_write(path, content)
    return ExportReport(
        path=str(path), quantize=quantize, file_bytes=len(content), gzip_bytes=len(gzip.compress(content, 9)),
        sparse_encoding=sparse_state, ops=info["ops"], integer_only=info["integer_only"],
        float_ops=info["float_ops"], tensors=info["tensors"], io=_io_description(lite, inputs) if lite else [],
        parity=parity, notes=notes, versions=versions(),
    )


FALLBACK = {"int8": "dynamic", "dynamic": "float16", "float16": None, None: None}


def _advice(quantize, calibration, saved_model_dir, inputs, expected, x_parity, min_agreement):
    """What to try instead, checked on this model: the next coarser mode is converted and measured."""
    hint = f"Calibrate with more representative inputs (used {len(calibration[0])}). " if calibration else ""
    fallback = FALLBACK[quantize]
    if fallback is None:
        return hint + ("Export with quantize=None (float32)." if quantize else
                       "A float32 conversion should reproduce Keras: please report this model.")
    lite = LiteRTModel(_convert(saved_model_dir, fallback, None, False, False, inputs), name=f"{fallback} trial")
    outputs = _parity(expected, lite, x_parity, inputs)["outputs"]
    verdict = "passes" if not parity_lib.failures(outputs, fallback, min_agreement) else "fails too"
    summary = parity_lib.summary_line(outputs, parity_lib.sqnr_floor(fallback))
    return (f"{hint}Tried quantize='{fallback}' on the same samples: {summary}; "
            f"it {verdict}.")


def _choose_sparse(dense_content, sparse_content, notes, quantize, x_parity, arm_sysroot):
    """Keeps the sparse encoding only if it is smaller, loads in the default interpreter and runs on aarch64."""
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
    refusal = _check_on_aarch64(sparse_content, quantize, x_parity, arm_sysroot, notes)
    if refusal:
        notes.append(f"sparse encoding refused: {refusal}; wrote the dense encoding, which runs everywhere.")
        return dense_content, "dropped (fails on aarch64 LiteRT)"
    return sparse_content, "on"


AARCH64_SAMPLES = 16  # parity samples run under emulation: enough to compare, quick to emulate


def _check_on_aarch64(content, quantize, x_parity, arm_sysroot, notes):
    """Why aarch64 LiteRT refuses the sparse file (or None): it must run there and reproduce the host's outputs."""
    sysroot = aarch64.find_sysroot(arm_sysroot)
    if sysroot is None:
        notes.append("sparse encoding checked on x86 only, where XNNPack's sparse path is off: it runs on ARM, so "
                     "build the aarch64 sysroot (`make arm-check`) and export again to check it there.")
        return None
    lite = LiteRTModel(content, name="sparse candidate")
    if len(lite.inputs) != 1:
        notes.append("sparse encoding not checked on aarch64: that check runs one-input models only.")
        return None
    samples = x_parity[0][:AARCH64_SAMPLES] if x_parity else np.stack([random_sample(lite)] * 2)
    runtime = aarch64.LiteRTProcess.aarch64(sysroot)
    with tempfile.TemporaryDirectory(prefix="tfprune_sparse_") as folder:
        candidate = Path(folder) / "sparse.tflite"
        candidate.write_bytes(content)
        try:
            result = aarch64.compare_with_host(candidate, samples, runtime)
        except RuntimeError as error:
            lines = [line for line in str(error).splitlines() if line.strip()]
            return f"aarch64 LiteRT (XNNPack's sparse path) cannot run it: {lines[-1][:200]}"
    floor = parity_lib.sqnr_floor(quantize)
    metrics = result["metrics"]
    if parity_lib.sqnr_rule(metrics, floor) == "below floor":
        return (f"aarch64 LiteRT's outputs differ from x86's (SQNR {metrics['sqnr_db']:.1f} dB, below the "
                f"{floor:.0f} dB floor of quantize={quantize!r})")
    notes.append(f"sparse encoding runs on {runtime.name} LiteRT, {result['samples']} samples: "
                 f"{parity_lib.summary_line({'output_0': metrics}, floor)} against x86.")
    return None
