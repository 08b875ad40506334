"""`export_tflite` for models of other Keras backends: the conversion runs in a TensorFlow process.

TFLite converts TensorFlow graphs. Under `KERAS_BACKEND=jax` (or torch) `export_tflite` saves
the stripped model as a `.keras` file with its calibration and parity inputs, and runs itself
again in a child Python with `KERAS_BACKEND=tensorflow`; a `.keras` file is backend-neutral,
so the result is the file TensorFlow would write for the same weights. The child imports the
modules of the model's custom objects (layers, activations, initializers) and passes them to
`load_model`; objects defined in the running script (`__main__`) or inside a function cannot
be imported there and are refused. The child's Keras model must give the outputs the caller's
model gives on the parity inputs, or nothing is converted or written (a file already at the path
stays as it was).

Run as `python -m tfprune.deploy.tensorflow_process SPEC.json` by `export_in_tensorflow`.
"""

import json
import os
import subprocess
import sys
import tempfile
import types
import warnings
from pathlib import Path

import numpy as np

_BUILT_IN = ("keras", "tfprune", "keras_hub", "keras_nlp", "tf_keras", "builtins")
TIMEOUT_SECONDS = 3600
_ERRORS = {"ValueError": ValueError, "OSError": OSError}  # what export_tflite raises for bad input, as such


def _custom_objects(model):
    """`{name: "module:qualname"}` of the model's objects that Keras does not know: layer classes, and the
    functions and Keras objects (initializers, regularizers, constraints) its layers hold."""
    import keras

    from tfprune.graph.traverse import layers_in

    kinds = (keras.layers.Layer, keras.initializers.Initializer, keras.regularizers.Regularizer,
             keras.constraints.Constraint)
    found = set()
    for layer in [model, *layers_in(model)]:
        found.add(type(layer))
        for value in vars(layer).values():
            if isinstance(value, types.FunctionType):
                found.add(value)
            elif isinstance(value, kinds):
                found.add(type(value))
    custom = [obj for obj in found if obj.__module__.split(".")[0] not in _BUILT_IN]
    unimportable = sorted(obj.__qualname__ for obj in custom
                          if obj.__module__ == "__main__" or "<locals>" in obj.__qualname__)
    if unimportable:
        raise ValueError(
            f"The model holds {unimportable}, defined in the running script or inside a function. Under "
            f"KERAS_BACKEND={keras.backend.backend()} the TFLite conversion runs in a TensorFlow process, which must "
            "import them: move them to a module, or export under KERAS_BACKEND=tensorflow."
        )
    return {obj.__name__: f"{obj.__module__}:{obj.__qualname__}" for obj in custom}


def _search_path():
    """The parent's import path, made absolute, so that the child finds the same modules."""
    return os.pathsep.join(os.path.abspath(entry or os.curdir) for entry in sys.path)


def export_in_tensorflow(model, path, calibration, x_parity, inputs, expected, **settings):
    """Runs `export_tflite(model, path, ...)` in a TensorFlow process; returns its `ExportReport`.

    `calibration` and `x_parity` are the lists of input arrays (or None) that the caller drew
    from the user's data, `expected` the caller's model's outputs on `x_parity` (or None);
    `settings` are `export_tflite`'s other arguments.
    """
    from tfprune.deploy.export import ExportReport

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        model.save(folder / "model.keras")
        arrays = {f"{kind}/{spec.keras_name}": values
                  for kind, samples in (("calibration", calibration), ("parity", x_parity))
                  for spec, values in zip(inputs, samples or ())}
        arrays.update({f"expected/{i}": output for i, output in enumerate(expected or ())})
        np.savez(folder / "inputs.npz", **arrays)
        spec = {"model": str(folder / "model.keras"), "inputs": str(folder / "inputs.npz"), "path": str(path),
                "report": str(folder / "report.json"), "objects": _custom_objects(model), "settings": settings}
        (folder / "spec.json").write_text(json.dumps(spec))
        env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
               "PYTHONPATH": _search_path()}
        try:
            run = subprocess.run([sys.executable, "-m", __name__, str(folder / "spec.json")], capture_output=True,
                                 text=True, env=env, timeout=TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired as error:
            raise RuntimeError(f"The TensorFlow process that converts the model did not finish in "
                               f"{TIMEOUT_SECONDS} s.") from error
        answer = json.loads((folder / "report.json").read_text()) if (folder / "report.json").exists() else None
        if answer is None:
            raise RuntimeError(f"The TensorFlow process that converts the model failed: {run.stderr[-3000:]}")
        if "error" in answer:  # said as export_tflite says it under TensorFlow
            raise _ERRORS.get(answer["error"]["type"], RuntimeError)(answer["error"]["message"])
        report = ExportReport(**answer)
    if report.parity and not report.parity.get("passed", True):
        warnings.warn(report.notes[-1], stacklevel=3)  # on_parity_failure="warn": the child wrote it anyway
    return report


def _check_same_outputs(expected, reloaded, path):
    """Raises ValueError unless the model reloaded under TensorFlow computes what the caller's did; run before
    converting, so that nothing is written to `path`."""
    for index, (mine, theirs) in enumerate(zip(expected, reloaded)):
        scale = max(float(np.max(np.abs(mine))), 1e-6)
        difference = float(np.max(np.abs(np.asarray(mine, np.float64) - theirs))) / scale
        if difference > 1e-3:
            raise ValueError(
                f"Output {index} of the model reloaded under TensorFlow differs from this model's by {difference:.2e} "
                "of its scale: its .keras file does not hold all it computes with (a layer's get_config or state). "
                f"Nothing was written to '{path}'."
            )


def _imported(reference):
    import importlib

    module, qualname = reference.split(":")
    found = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


def _main(spec_path):
    spec = json.loads(Path(spec_path).read_text())
    try:
        import tfprune
        from tfprune.deploy.export import _keras_outputs, export_tflite

        custom_objects = {name: _imported(reference) for name, reference in spec["objects"].items()}
        model = tfprune.load_model(spec["model"], custom_objects=custom_objects, compile=False, safe_mode=False)
        with np.load(spec["inputs"]) as stored:
            by_kind = {}
            for key in stored.files:
                kind, name = key.split("/", 1)
                by_kind.setdefault(kind, {})[name] = stored[key]
        if "expected" in by_kind:  # parity inputs saved in input order: what the parent's model computed them on
            expected = [by_kind["expected"][str(i)] for i in range(len(by_kind["expected"]))]
            _check_same_outputs(expected, _keras_outputs(model, list(by_kind["parity"].values())), spec["path"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a parity warning comes back in the report
            report = export_tflite(model, spec["path"], representative_data=by_kind.get("calibration"),
                                   parity_data=by_kind.get("parity"), **spec["settings"])
    except Exception as error:  # the parent raises it again, with its type where export_tflite raises it
        Path(spec["report"]).write_text(json.dumps({"error": {"type": type(error).__name__, "message": str(error)}}))
        return
    report.save_json(spec["report"])


if __name__ == "__main__":
    _main(sys.argv[1])
