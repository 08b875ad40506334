"""Trained: a LatencyBudget of 0.5 against uniform L2 pruning at the same measured latency.

Two models trained on MNIST (the 5k training subset, the 10k test set):
- the MNIST CNN of `structured_latency.py` (4 convolutions with BatchNorm, 28x28);
- keras.applications.MobileNetV2 (alpha 0.35, random init, BatchNorm momentum 0.9 instead of 0.999 so that
  the moving statistics settle in this short training) on MNIST resized to 48x48, gray in 3 channels.

Each is trained dense, then its latency table is measured with LiteRT on this machine (INT8, 1
thread, `round_to="auto"`). Then:
- *budget*: `prune_to_budget(dense, LatencyBudget(0.5))` (L2 importance, the search on the table);
- *uniform*: the same fraction s of every set of channels pruned by L2 (any count: no `round_to`), with s
  chosen in steps of 0.025 so that its measured INT8 latency is the closest to the budget's.
Both are fine-tuned for the same epochs with their masks fixed, shrunk and exported to INT8; their
latency is measured beside the dense model's in one run (in turns of 10 runs), their accuracy with
Keras and with LiteRT INT8 on the 10k test images. Repeated over seeds (`--seeds`). No phone is attached
here: where ./.arm64-sysroot exists, the budgeted INT8 model also runs on aarch64 LiteRT (Cortex-A76,
under qemu) on 200 test images, and the share of bit-identical outputs against x86 is recorded.

Run: `python benchmarks/latency_budget_accuracy.py [--seeds 2] [--epochs 12] [--finetune 6] [--models ...]`.
Writes benchmarks/results/latency_budget_accuracy.json (a run of some models keeps the others' results; about
35 minutes with the defaults).
"""

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from structured_latency import accuracy, compiled, mnist_cnn  # noqa: E402

import tfprune  # noqa: E402
from tfprune.data import load_mnist  # noqa: E402
from tfprune.deploy import LiteRTModel, LocalLiteRT, export_tflite  # noqa: E402
from tfprune.deploy.aarch64 import LiteRTProcess, compare_with_host, find_sysroot  # noqa: E402
from tfprune.files import atomic_write  # noqa: E402
from tfprune.structured.controller import ChannelController  # noqa: E402

RESULTS = Path(__file__).parent / "results"
BATCH = 64
UNIFORM_SPARSITIES = np.round(np.arange(0.1, 0.901, 0.025), 3)


def mobilenet_v2():
    model = keras.applications.MobileNetV2(weights=None, alpha=0.35, input_shape=(48, 48, 3), classes=10,
                                           classifier_activation=None)
    for layer in model.layers:  # keras.applications' 0.999 needs thousands of steps before inference statistics hold
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    return model


def as_rgb48(images):
    return np.repeat(keras.ops.convert_to_numpy(keras.ops.image.resize(images[..., None], (48, 48))), 3, axis=-1)


TASKS = {"mnist_cnn": (mnist_cnn, lambda images: images[..., None]), "mobilenet_v2_a0.35_48": (mobilenet_v2, as_rgb48)}


def uniform(model, sparsity, round_to):
    pruned = tfprune.prune_channels(model, tfprune.ConstantSparsity(sparsity, 0), round_to=round_to)
    ChannelController(pruned).prune_to(sparsity, step=0)
    return pruned


def export(model, path, x):
    export_tflite(model, path, quantize="int8", representative_data=x[:200], parity_data=x[200:300],
                  on_parity_failure="warn", arm_sysroot=None)
    return path


def fine_tuned(pruned, x, y, epochs, learning_rate=5e-4):
    compiled(pruned, learning_rate).fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0,
                                        callbacks=[tfprune.UpdatePruningStep()])
    return tfprune.shrink(pruned, verbose=False)


def run(name, seed, x, y, x_test, y_test, args, folder, device):
    build, prepare = TASKS[name]
    x, x_test = prepare(x), prepare(x_test)
    keras.utils.set_random_seed(seed)
    dense = compiled(build(), 2e-3)
    dense.fit(x, y, batch_size=BATCH, epochs=args.epochs, verbose=0)
    table = tfprune.LatencyTable.measure(dense, device, levels=3, verbose=False)
    budget = tfprune.prune_to_budget(dense, tfprune.LatencyBudget(0.5, table=table))
    # the uniform sparsity whose measured latency is closest to the budget's, measured side by side
    candidates = {"budget": export(tfprune.shrink(budget, verbose=False), folder / "budget.tflite", x)}
    for s in UNIFORM_SPARSITIES:
        pruned = uniform(dense, s, None)
        controller = ChannelController(pruned)
        if controller.kept_groups().sum() < sum(channel_set.size for channel_set in controller.sets):  # some go
            candidates[f"uniform_{s}"] = export(tfprune.shrink(pruned, verbose=False), folder / f"uniform_{s}.tflite", x)
    dense_path = export(dense, folder / "dense.tflite", x)
    timed = dict(zip(["dense", *candidates], (m.cost for m in device.measure([dense_path, *candidates.values()]))))
    matched = min((s for s in UNIFORM_SPARSITIES if f"uniform_{s}" in timed),
                  key=lambda s: abs(timed[f"uniform_{s}"] - timed["budget"]))
    models = {"budget": budget, "uniform": uniform(dense, matched, None)}
    row = {"uniform_sparsity": float(matched), "round_to": table.round_to, "dense_accuracy": accuracy(
        dense.predict(x_test, verbose=0), y_test)}
    paths = {}
    for label, pruned in models.items():
        keras.utils.set_random_seed(seed)
        small = fine_tuned(pruned, x, y, args.finetune)
        paths[label] = export(small, folder / f"{label}_tuned.tflite", x)
        row[label] = {"flops_ratio": tfprune.model_cost(small).flops / tfprune.model_cost(dense).flops,
                      "keras_accuracy": accuracy(small.predict(x_test, verbose=0), y_test),
                      "int8_accuracy": accuracy(LiteRTModel.load(paths[label]).predict(x_test), y_test)}
    final = device.measure([dense_path, paths["budget"], paths["uniform"]])
    for label, measured in zip(("budget", "uniform"), final[1:]):
        row[label]["latency_ratio"] = measured.cost / final[0].cost
        row[label]["latency_over_flops"] = row[label]["latency_ratio"] / row[label]["flops_ratio"]
    row["dense_ms"] = final[0].cost
    sysroot = find_sysroot("auto")
    if sysroot is not None:  # no phone here: the budgeted INT8 model on aarch64 LiteRT under qemu, against x86
        on_arm = compare_with_host(paths["budget"], x_test[:200], LiteRTProcess.aarch64(sysroot))
        row["budget"]["aarch64_bit_identical"] = on_arm["raw_exact_match"]
    print(f"{name} seed {seed}: dense {row['dense_accuracy']:.2%}, {final[0].cost:.3f} ms; "
          + "; ".join(f"{label} latency {row[label]['latency_ratio']:.3f} FLOPs {row[label]['flops_ratio']:.3f} "
                      f"accuracy {row[label]['keras_accuracy']:.2%} (INT8 {row[label]['int8_accuracy']:.2%})"
                      for label in ("budget", "uniform"))
          + f" [uniform at {matched}]"
          + (f"; aarch64 bit-identical {row['budget']['aarch64_bit_identical']:.0%}" if sysroot else ""), flush=True)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=12, help="dense training epochs (BatchNorm statistics need them)")
    parser.add_argument("--finetune", type=int, default=6, help="fine-tuning epochs after pruning")
    parser.add_argument("--models", nargs="+", choices=sorted(TASKS), default=list(TASKS))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    started = time.time()
    (x, y), (x_test, y_test) = load_mnist()
    device = LocalLiteRT(num_threads=1, runs=200, warmup=10)
    result = {}
    for name in args.models:
        rows = []
        for seed in range(args.seeds):
            with tempfile.TemporaryDirectory() as folder:
                rows.append(run(name, seed, x, y, x_test, y_test, args, Path(folder), device))
        summary = {}
        for label in ("budget", "uniform"):
            for metric in ("latency_ratio", "flops_ratio", "keras_accuracy", "int8_accuracy", "latency_over_flops"):
                values = [r[label][metric] for r in rows]
                summary[f"{label}_{metric}"] = {"mean": float(np.mean(values)), "min": float(np.min(values)),
                                                "max": float(np.max(values))}
        result[name] = {"runs": rows, "summary": summary, "measured_at": time.strftime("%Y-%m-%d %H:%M")}
    RESULTS.mkdir(exist_ok=True)
    earlier = RESULTS / "latency_budget_accuracy.json"
    if args.models != list(TASKS) and earlier.is_file():  # a run of some models keeps the others' results
        result = {**json.loads(earlier.read_text())["models"], **result}
    atomic_write(RESULTS / "latency_budget_accuracy.json", (json.dumps({
        "benchmark": "latency_budget_accuracy", "device": device.name, "settings": device.settings,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}, "epochs": args.epochs,
        "finetune_epochs": args.finetune, "models": result, "seconds": time.time() - started}, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
