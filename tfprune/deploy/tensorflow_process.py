"""`export_tflite` for models of other Keras backends: the conversion runs in a TensorFlow process.

TFLite converts TensorFlow graphs. Under `KERAS_BACKEND=jax` (or torch) `export_tflite` saves
the stripped model as a `.keras` file with its calibration and parity inputs, and runs itself
again in a child Python with `KERAS_BACKEND=tensorflow`; a `.keras` file is backend-neutral,
so the result is the file TensorFlow would write for the same weights, verified against the
TensorFlow model. The child imports the classes of the model's custom layers from their
modules; a class defined in the running script (`__main__`) cannot be imported there and is
refused.

Run as `python -m tfprune.deploy.tensorflow_process SPEC.json` by `export_in_tensorflow`.
"""

import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

_BUILT_IN = ("keras", "tfprune", "keras_hub", "keras_nlp", "tf_keras")


def _custom_classes(model):
    """`{name: "module:qualname"}` of the model's classes that Keras and tfprune do not know, which the child
    imports and passes to `load_model` (registered with Keras or not)."""
    from tfprune.graph.traverse import layers_in

    classes = {type(layer) for layer in [model, *layers_in(model)]}
    custom = {c for c in classes if c.__module__.split(".")[0] not in _BUILT_IN}
    in_script = sorted(c.__name__ for c in custom if c.__module__ == "__main__")
    if in_script:
        raise ValueError(
            f"The model holds {in_script}, defined in the running script. Under KERAS_BACKEND="
            f"{os.environ.get('KERAS_BACKEND', 'jax')} the TFLite conversion runs in a TensorFlow process, which must "
            "import these classes: move them to a module, or export under KERAS_BACKEND=tensorflow."
        )
    return {c.__name__: f"{c.__module__}:{c.__qualname__}" for c in custom}


def export_in_tensorflow(model, path, calibration, x_parity, inputs, **settings):
    """Runs `export_tflite(model, path, ...)` in a TensorFlow process; returns its `ExportReport`.

    `calibration` and `x_parity` are the lists of input arrays (or None) that the caller drew
    from the user's data; `settings` are `export_tflite`'s other arguments.
    """
    from tfprune.deploy.export import ExportReport

    classes = _custom_classes(model)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        model.save(folder / "model.keras")
        arrays = {}
        for kind, samples in (("calibration", calibration), ("parity", x_parity)):
            for spec, values in zip(inputs, samples or ()):
                arrays[f"{kind}/{spec.keras_name}"] = values
        np.savez(folder / "inputs.npz", **arrays)
        spec = {"model": str(folder / "model.keras"), "inputs": str(folder / "inputs.npz"), "path": str(path),
                "report": str(folder / "report.json"), "classes": classes, "settings": settings}
        (folder / "spec.json").write_text(json.dumps(spec))
        env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3",
               "PYTHONPATH": os.pathsep.join([os.getcwd(), *sys.path])}
        run = subprocess.run([sys.executable, "-m", __name__, str(folder / "spec.json")], capture_output=True,
                             text=True, env=env)
        if run.returncode != 0:
            raise RuntimeError(f"The TensorFlow process that converts the model failed: {run.stderr[-3000:]}")
        answer = json.loads((folder / "report.json").read_text())
        if "error" in answer:  # bad input or a failed check, said as export_tflite says it under TensorFlow
            raise ValueError(answer["error"])
        report = ExportReport(**answer)
    if report.parity and not report.parity.get("passed", True):
        warnings.warn(report.notes[-1], stacklevel=3)  # on_parity_failure="warn": the child wrote it anyway
    return report


def _imported(reference):
    import importlib

    module, qualname = reference.split(":")
    found = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


def _main(spec_path):
    spec = json.loads(Path(spec_path).read_text())
    import tfprune
    from tfprune.deploy.export import export_tflite

    try:
        custom_objects = {name: _imported(reference) for name, reference in spec["classes"].items()}
        model = tfprune.load_model(spec["model"], custom_objects=custom_objects)
        with np.load(spec["inputs"]) as stored:
            by_kind = {}
            for key in stored.files:
                kind, name = key.split("/", 1)
                by_kind.setdefault(kind, {})[name] = stored[key]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a parity warning comes back in the report
            report = export_tflite(model, spec["path"], representative_data=by_kind.get("calibration"),
                                   parity_data=by_kind.get("parity"), **spec["settings"])
    except ValueError as error:
        Path(spec["report"]).write_text(json.dumps({"error": str(error)}))
        return
    report.save_json(spec["report"])


if __name__ == "__main__":
    _main(sys.argv[1])
