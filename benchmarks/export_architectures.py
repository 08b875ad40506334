"""Export of real architectures in every quantization mode: bytes, parity metrics and latency.

MobileNetV2 (alpha 0.35, 96x96), EfficientNetB0 (64x64) and ResNet50 (64x64) from keras.applications
with random weights (no downloads here), trained one epoch on random images so that BatchNorm has real
statistics; a Conv1D regressor and an Embedding ->
Bidirectional(LSTM) text classifier trained for a few epochs on synthetic data. Each model is exported
with quantize None, "float16", "dynamic" and "int8" (parity failures only warn here, so that every
metric is recorded), then all of its .tflite files are timed interleaved on 1 thread.
These measurements set the per-mode SQNR floors in `tfprune/deploy/parity.py`.

Run: `python benchmarks/export_architectures.py [--samples 100] [--runs 50]`.
Writes benchmarks/results/export_architectures.json.
"""

import argparse
import json
import platform
import tempfile
import warnings
from pathlib import Path

import keras
import numpy as np

from tfprune.deploy import benchmark_tflite, export_tflite
from tfprune.deploy import parity as parity_lib
from tfprune.deploy.versions import versions

RESULTS = Path(__file__).parent / "results"
MODES = (None, "float16", "dynamic", "int8")


def conv1d_regressor(rng):
    x = rng.normal(size=(600, 32, 3)).astype("float32")
    y = (x[:, :, 0].mean(axis=1) * 2 + np.sin(x[:, :8, 1].sum(axis=1))).astype("float32")
    model = keras.Sequential([keras.Input((32, 3)), keras.layers.Conv1D(16, 5, activation="relu"),
                              keras.layers.Conv1D(16, 3, activation="relu"), keras.layers.GlobalAveragePooling1D(),
                              keras.layers.Dense(1)])
    model.compile("adam", "mse")
    model.fit(x, y, epochs=10, verbose=0)
    return model, x, "trained 10 epochs on a synthetic regression task"


def bilstm_text(rng):
    x = rng.integers(1, 200, size=(600, 20)).astype("int32")
    y = (x[:, :10].mean(axis=1) > x[:, 10:].mean(axis=1)).astype("int32")
    tokens = keras.Input((20,), dtype="int32")
    h = keras.layers.Embedding(200, 16)(tokens)
    h = keras.layers.Bidirectional(keras.layers.LSTM(16))(h)
    model = keras.Model(tokens, keras.layers.Dense(2)(h))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=5, verbose=0)
    return model, x, "trained 5 epochs on synthetic token sequences (int32 ids)"


def application(name, size, **kwargs):
    def build(rng):
        # Logits: a random network's softmax is uniform to float precision, which leaves nothing to compare.
        model = getattr(keras.applications, name)(input_shape=(size, size, 3), weights=None,
                                                  classifier_activation=None, **kwargs)
        x = rng.uniform(-1, 1, size=(300, size, size, 3)).astype("float32")
        # One epoch on random labels sets the BatchNorm statistics: with their initial ones, activations
        # vanish through the depth (logits near 1e-10) and every comparison is degenerate.
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, rng.integers(0, 1000, len(x)), epochs=1, batch_size=32, verbose=0)
        return model, x, (f"keras.applications.{name} ({size}x{size}, logits), random weights trained 1 epoch on "
                          "random images and labels")

    return build


ARCHITECTURES = {
    "MobileNetV2_a0.35_96": application("MobileNetV2", 96, alpha=0.35),
    "EfficientNetB0_64": application("EfficientNetB0", 64),
    "ResNet50_64": application("ResNet50", 64),
    "Conv1D_regressor": conv1d_regressor,
    "BiLSTM_text": bilstm_text,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100, help="calibration and parity samples (default 100)")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per model (default 50)")
    parser.add_argument("--only", nargs="*", choices=sorted(ARCHITECTURES), help="a subset of the architectures")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only or ARCHITECTURES:
            keras.utils.set_random_seed(0)
            model, x, weights = ARCHITECTURES[name](np.random.default_rng(0))
            calibration, parity = x[: args.samples], x[-args.samples :]
            paths = []
            for mode in MODES:
                path = Path(tmp) / f"{name}_{mode}.tflite"
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    report = export_tflite(model, path, quantize=mode, representative_data=calibration,
                                           parity_data=parity, on_parity_failure="warn")
                paths.append(path)
                rows.append({"architecture": name, "weights": weights, "quantize": mode,
                             "file_bytes": report.file_bytes, "gzip_bytes": report.gzip_bytes,
                             "passed": report.parity["passed"], "parity": report.parity["outputs"],
                             "io": report.io, "notes": report.notes})
                print(f"{name:22s} {str(mode):8s} {report.file_bytes:>10,} B  "
                      f"{parity_lib.summary_line(report.parity['outputs'], report.parity['min_sqnr_db'])}  "
                      f"{'ok' if report.parity['passed'] else 'REFUSED'}", flush=True)
            timing = benchmark_tflite(paths, runs=args.runs, warmup=5)
            for row, timed in zip(rows[-len(MODES) :], timing["models"]):
                row["median_ms"] = timed["median_ms"]
    RESULTS.mkdir(exist_ok=True)
    result = {"benchmark": "export_architectures", "machine": {"platform": platform.platform(), "cpus": 2},
              "versions": versions(), "samples": args.samples, "latency": "median of interleaved runs, 1 thread",
              "rows": rows}
    (RESULTS / "export_architectures.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'export_architectures.json'}")


if __name__ == "__main__":
    main()
