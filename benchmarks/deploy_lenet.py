"""LeNet-300-100 on MNIST: dense float vs 90%-sparse INT8 .tflite — size, accuracy, parity, latency.

Train on the 5k MNIST subset, test on the official 10k test set (read from `tfprune.data.mnist_dir()`;
`tfprune.data.download_mnist()` fetches them, or set $TFPRUNE_MNIST_DIR to a folder that holds them).
Targets (issue 3): pruned INT8 gzip <= 1/15 of the dense float32 .tflite; pruned test accuracy
within 1 point of the dense float model; >= 99% Keras/TFLite top-1 agreement. Latency of dense
vs pruned INT8 is measured interleaved in the same run.

Run: `python benchmarks/deploy_lenet.py`. Writes benchmarks/results/deploy_lenet.json.
"""

import json
import os
import platform
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfprune  # noqa: E402
from tfprune.data import load_mnist  # noqa: E402
from tfprune.deploy import LiteRTModel, export_tflite  # noqa: E402
from tfprune.deploy.bench import benchmark_tflite  # noqa: E402

RESULTS = Path(__file__).parent / "results"
BATCH = 60


def lenet():
    return keras.Sequential([keras.Input((784,)), keras.layers.Dense(300, activation="relu"),
                             keras.layers.Dense(100, activation="relu"), keras.layers.Dense(10)])


def compile_model(model, lr=1e-3):
    model.compile(keras.optimizers.Adam(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def acc(predictions, y):
    return float(np.mean(np.argmax(predictions, -1) == y))


def flat_mnist():
    (x, y), (x_test, y_test) = load_mnist()
    return (x.reshape(-1, 784), y), (x_test.reshape(-1, 784), y_test)


def train_dense_and_pruned(x, y):
    """Dense LeNet-300-100 (20 epochs), then pruned to 90% from it (25 epochs) and stripped."""
    keras.utils.set_random_seed(0)
    dense = compile_model(lenet())
    dense.fit(x, y, epochs=20, batch_size=BATCH, verbose=0)
    steps = int(np.ceil(len(x) / BATCH))
    schedule = tfprune.PolynomialDecay.from_epochs(0.0, 0.9, steps_per_epoch=steps, end_epoch=15, frequency=10)
    pruned = compile_model(tfprune.prune_low_magnitude(dense, schedule), lr=5e-4)
    pruned.fit(x, y, epochs=25, batch_size=BATCH, verbose=0, callbacks=[tfprune.UpdatePruningStep()])
    return dense, tfprune.strip_pruning(pruned)


def main():
    (x, y), (x_test, y_test) = flat_mnist()
    dense, final = train_dense_and_pruned(x, y)
    dense_acc = acc(dense.predict(x_test, verbose=0), y_test)
    print(f"dense float Keras accuracy {dense_acc:.4f}", flush=True)
    sparsity = tfprune.sparsity_report(final)["total"]["sparsity"]
    pruned_acc = acc(final.predict(x_test, verbose=0), y_test)
    print(f"pruned ({sparsity:.1%}) Keras accuracy {pruned_acc:.4f}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        float_report = export_tflite(dense, tmp / "dense_float32.tflite", parity_data=x_test[:1000])
        dense_int8 = export_tflite(dense, tmp / "dense_int8.tflite", quantize="int8", representative_data=x[:500],
                                   parity_data=x_test)
        pruned_int8 = export_tflite(final, tmp / "pruned_int8.tflite", quantize="int8", representative_data=x[:500],
                                    sparse_encoding=True, parity_data=x_test)
        for r in (float_report, dense_int8, pruned_int8):
            print(r.summary(), flush=True)
        tflite_acc = {name: acc(LiteRTModel.load(tmp / f"{name}.tflite").predict(x_test), y_test)
                      for name in ("dense_int8", "pruned_int8")}
        bench = benchmark_tflite([tmp / "dense_int8.tflite", tmp / "pruned_int8.tflite"], runs=2000, warmup=200)
    dense_ms, pruned_ms = (m["median_ms"] for m in bench["models"])
    result = {
        "benchmark": "deploy_lenet",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "dense_float_keras_accuracy": dense_acc,
        "pruned_keras_accuracy": pruned_acc,
        "pruned_sparsity": sparsity,
        "dense_float32_tflite_bytes": float_report.file_bytes,
        "dense_float32_tflite_gzip_bytes": float_report.gzip_bytes,
        "dense_int8": {"bytes": dense_int8.file_bytes, "gzip_bytes": dense_int8.gzip_bytes,
                       "tflite_accuracy": tflite_acc["dense_int8"], "parity": dense_int8.parity},
        "pruned_int8": {"bytes": pruned_int8.file_bytes, "gzip_bytes": pruned_int8.gzip_bytes,
                        "tflite_accuracy": tflite_acc["pruned_int8"], "parity": pruned_int8.parity,
                        "sparse_encoding": pruned_int8.sparse_encoding, "notes": pruned_int8.notes},
        "gzip_ratio_float32_over_pruned_int8": float_report.file_bytes / pruned_int8.gzip_bytes,
        "accuracy_drop_points": (dense_acc - tflite_acc["pruned_int8"]) * 100,
        "latency": {"dense_int8_median_ms": dense_ms, "pruned_int8_median_ms": pruned_ms,
                    "ratio_pruned_over_dense": pruned_ms / dense_ms, "benchmark": bench},
    }
    result["targets_met"] = {
        "gzip_at_most_1_15_of_float32": result["gzip_ratio_float32_over_pruned_int8"] >= 15,
        "accuracy_within_1_point": result["accuracy_drop_points"] <= 1.0,
        "agreement_at_least_99": pruned_int8.parity["outputs"]["output_0"]["top1_agreement"] >= 0.99,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "deploy_lenet.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("gzip_ratio_float32_over_pruned_int8", "accuracy_drop_points",
                                             "targets_met")}, indent=2))
    print(f"latency median: dense INT8 {dense_ms:.4f} ms, pruned INT8 {pruned_ms:.4f} ms "
          f"(ratio {pruned_ms / dense_ms:.2f}x)")


if __name__ == "__main__":
    main()
