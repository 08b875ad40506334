"""The main tfprune job, end to end, offline on the embedded digits dataset.

train dense -> prune to 85% (PolynomialDecay) -> fine-tune -> strip -> export dense and
pruned INT8 .tflite (verified) -> benchmark side by side -> comparison table.
The same dense model is also channel-pruned (half of every set of channels) and shrunk:
unstructured sparsity makes the file smaller, removing channels makes the model faster.
Where the aarch64 sysroot exists (`make arm-check` builds it), the table also gives the
instructions a Cortex-A76 executes per inference, counted under qemu-user.

Run: `make demo` (or `python examples/demo.py --out demo_output`).
Writes comparison.md, comparison.json and comparison.png to the output folder.
"""

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfprune  # noqa: E402
from tfprune.data import load_digits  # noqa: E402
from tfprune.deploy import LiteRTModel, export_tflite  # noqa: E402
from tfprune.deploy.aarch64 import find_sysroot  # noqa: E402
from tfprune.deploy.bench import benchmark_tflite  # noqa: E402
from tfprune.deploy.instructions import INSTRUCTIONS_ARE_NOT_LATENCY, add_instruction_counts  # noqa: E402

BATCH = 32


def build_model():
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10),
        ]
    )


def compile_model(model):
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def accuracy(predict, x, y):
    return float(np.mean(np.argmax(predict(x), axis=-1) == y))


START = time.perf_counter()


def step(message):
    print(f"[{time.perf_counter() - START:6.1f}s] {message}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_output")
    parser.add_argument("--sparsity", type=float, default=0.85)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = load_digits()
    step(f"digits: {len(x_train)} train / {len(x_test)} test images of 8x8")

    dense = compile_model(build_model())
    dense.fit(x_train, y_train, epochs=args.epochs, batch_size=BATCH, verbose=0)
    dense_acc = accuracy(lambda x: dense.predict(x, verbose=0), x_test, y_test)
    step(f"dense model trained: test accuracy {dense_acc:.2%}")

    finetune_epochs = 10
    schedule = tfprune.PolynomialDecay.from_epochs(
        0.0, args.sparsity, steps_per_epoch=int(np.ceil(len(x_train) / BATCH)), begin_epoch=0, end_epoch=6,
        frequency=10,
    )
    pruned = compile_model(tfprune.prune_low_magnitude(dense, schedule))
    pruned.fit(x_train, y_train, epochs=finetune_epochs, batch_size=BATCH, verbose=0,
               callbacks=[tfprune.UpdatePruningStep(), tfprune.PruningSummaries(out / "logs")])
    final = tfprune.strip_pruning(pruned)
    pruned_acc = accuracy(lambda x: final.predict(x, verbose=0), x_test, y_test)
    report = tfprune.sparsity_report(final)
    step(f"pruned to {report['total']['sparsity']:.1%} and fine-tuned: test accuracy {pruned_acc:.2%}")
    print(tfprune.format_report(report))
    print(f"dense accuracy {dense_acc:.2%} -> pruned {pruned_acc:.2%} ({(pruned_acc - dense_acc) * 100:+.1f} points)")

    channel_schedule = tfprune.PolynomialDecay.from_epochs(
        0.0, 0.5, steps_per_epoch=int(np.ceil(len(x_train) / BATCH)), begin_epoch=0, end_epoch=6, frequency=10)
    channel_pruned = compile_model(tfprune.prune_channels(dense, channel_schedule, round_to=8))
    channel_pruned.fit(x_train, y_train, epochs=finetune_epochs, batch_size=BATCH, verbose=0,
                       callbacks=[tfprune.UpdatePruningStep()])
    shrunk = tfprune.shrink(channel_pruned)
    shrunk_acc = accuracy(lambda x: shrunk.predict(x, verbose=0), x_test, y_test)
    step(f"channel-pruned to half of every layer's channels and shrunk: test accuracy {shrunk_acc:.2%}")
    models = {"dense_int8": (dense, dense_acc), "pruned_int8": (final, pruned_acc),
              "channels_int8": (shrunk, shrunk_acc)}

    exports = {}
    for name, (model, _) in models.items():
        exports[name] = export_tflite(model, out / f"{name}.tflite", quantize="int8",
                                      representative_data=x_train[:300], sparse_encoding=(name == "pruned_int8"),
                                      parity_data=x_test)
        step(exports[name].summary())
    float_report = export_tflite(dense, out / "dense_float32.tflite", parity_data=x_test)
    step(float_report.summary())

    bench = benchmark_tflite([out / f"{name}.tflite" for name in exports], runs=300, warmup=30)
    sysroot = find_sysroot("auto")
    if sysroot:
        step("counting aarch64 instructions per inference (Cortex-A76 under qemu-user)")
        add_instruction_counts(bench, sysroot)
    else:
        step("no aarch64 sysroot here: `make arm-check` (as root) builds one, and this table gains an aarch64 "
             "instructions column")
    latency = {Path(m["path"]).stem: m for m in bench["models"]}
    rows = []
    for name, (model, keras_accuracy) in models.items():
        lite = LiteRTModel.load(out / f"{name}.tflite")
        rep = tfprune.sparsity_report(model)["total"]
        rows.append({
            "model": name,
            "keras_accuracy": keras_accuracy,
            "tflite_accuracy": accuracy(lite.predict, x_test, y_test),
            "params": model.count_params(),
            "prunable_nonzeros": rep["nonzeros"],
            "sparsity": rep["sparsity"],
            "flops": tfprune.model_cost(model).flops,
            "tflite_bytes": exports[name].file_bytes,
            "gzip_bytes": exports[name].gzip_bytes,
            "top1_agreement": exports[name].parity["outputs"]["output_0"]["top1_agreement"],
            "median_latency_ms": latency[name]["median_ms"],
            "p90_latency_ms": latency[name]["p90_ms"],
            "aarch64_instructions": latency[name].get("aarch64_instructions"),
        })
    write_outputs(out, rows, float_report, bench)


def write_outputs(out, rows, float_report, bench):
    counted = rows[0]["aarch64_instructions"] is not None
    header = ("| model | Keras acc | TFLite acc | params | non-zero (prunable) | sparsity | FLOPs | .tflite bytes "
              "| gzip bytes | Keras/TFLite agreement | median latency ms |" + (" aarch64 instr (A76) |" * counted)
              + "\n|---|---|---|---|---|---|---|---|---|---|---|" + "---|" * counted + "\n")
    lines = [f"| {r['model']} | {r['keras_accuracy']:.2%} | {r['tflite_accuracy']:.2%} | {r['params']:,} | "
             f"{r['prunable_nonzeros']:,} | {r['sparsity']:.1%} | {r['flops']:,} | {r['tflite_bytes']:,} | "
             f"{r['gzip_bytes']:,} | {r['top1_agreement']:.2%} | {r['median_latency_ms']:.4f} |"
             + (f" {r['aarch64_instructions']:,.0f} |" if counted else "") for r in rows]
    dense, pruned, channels = rows
    summary = (f"\nDense float32 .tflite: {float_report.file_bytes:,} bytes ({float_report.gzip_bytes:,} gzipped). "
               f"Pruned INT8 gzip is 1/{float_report.file_bytes / pruned['gzip_bytes']:.1f} of it. "
               f"Latency ratio pruned/dense INT8 (same run, interleaved): "
               f"{pruned['median_latency_ms'] / dense['median_latency_ms']:.2f}x "
               "(unstructured sparsity saves bytes, not time, on x86 XNNPack). "
               f"Channel-pruned and shrunk INT8: {channels['median_latency_ms'] / dense['median_latency_ms']:.2f}x "
               f"the dense latency at {channels['flops'] / dense['flops']:.2f}x its FLOPs.\n")
    if counted:
        summary += (f"\nOn a Cortex-A76 (aarch64 LiteRT under qemu-user): pruned/dense instructions "
                    f"{pruned['aarch64_instructions'] / dense['aarch64_instructions']:.2f}x, channel-pruned/dense "
                    f"{channels['aarch64_instructions'] / dense['aarch64_instructions']:.2f}x. "
                    f"{INSTRUCTIONS_ARE_NOT_LATENCY}\n")
    markdown = "# tfprune demo: dense vs pruned vs channel-pruned INT8\n\n" + header + "\n".join(lines) + "\n" + summary
    (out / "comparison.md").write_text(markdown)
    (out / "comparison.json").write_text(json.dumps({"rows": rows, "dense_float32_bytes": float_report.file_bytes,
                                                     "benchmark": bench}, indent=2) + "\n")
    plot(out / "comparison.png", rows)
    print("\n" + markdown)
    print(f"wrote {out}/comparison.md, comparison.json, comparison.png; TensorBoard logs in {out}/logs")


def plot(path, rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import PercentFormatter

    names = [r["model"].replace("_int8", " INT8") for r in rows]
    panels = [  # title, values, label format
        ("download size (gzip), kB", [r["gzip_bytes"] / 1000 for r in rows], "{:.1f} kB"),
        ("median latency, µs (1 thread)", [r["median_latency_ms"] * 1000 for r in rows], "{:.1f} µs"),
        ("TFLite test accuracy", [r["tflite_accuracy"] * 100 for r in rows], "{:.2f}%"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, (title, values, label) in zip(axes, panels):
        ax.bar(names, values, color=["#888888", "#2a7ab0", "#d9822b"][:len(values)])
        ax.set_title(title, fontsize=10)
        ax.margins(y=0.15)  # room for the value labels
        for i, v in enumerate(values):
            ax.text(i, v, label.format(v), ha="center", va="bottom", fontsize=9)
    accuracy_axis = axes[2]
    low = min(panels[2][1])
    accuracy_axis.set_ylim(max(0.0, low - 3.0), 100.0)  # zoomed so that a difference of a point shows
    accuracy_axis.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
