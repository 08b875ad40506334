"""Latency benchmarking of .tflite models in the LiteRT interpreter on this machine.

Several models are measured interleaved (one run of each in turn), so that their
ratio holds on a noisy, shared machine.
"""

import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from tfprune.deploy.litert import LiteRTModel
from tfprune.deploy.versions import versions


def _rss_bytes():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def _percentile(values, q):
    return float(np.percentile(values, q))


def random_sample(model):
    """A random float input sample (a list of them for several inputs); integer ids get zeros, always valid."""
    rng = np.random.default_rng(0)

    def sample(detail):
        shape = tuple(detail["shape"][1:])
        if np.issubdtype(detail["dtype"], np.integer) and not detail["quantization"][0]:
            return np.zeros(shape, detail["dtype"])
        return rng.random(shape, dtype=np.float32)

    samples = [sample(d) for d in model.inputs]
    return samples[0] if len(samples) == 1 else samples


def benchmark_tflite(path_or_paths, num_threads=1, runs=200, warmup=20, use_xnnpack=True, input_data=None,
                     consecutive=1):
    """Measures first-inference and steady-state latency of one or more .tflite models.

    Args:
        path_or_paths: a path or a list of paths.
        num_threads: interpreter threads.
        runs, warmup: timed and untimed invocations per model (interleaved across models).
        use_xnnpack: False disables LiteRT's default XNNPack delegate.
        input_data: optional sample (without batch axis; a list for several inputs); random data otherwise.
        consecutive: timed invocations of one model in a row, after an untimed one, before the next model's
            turn. 1 interleaves run by run (the models' ratio holds through the machine's drift); more keep
            each model in cache, as when it runs alone (when measuring many models, e.g. cut-out operators).

    Returns:
        {"machine": {...}, "settings": {...}, "models": [{"path", "file_bytes", "first_inference_ms",
        "median_ms", "p90_ms", "p99_ms", "mean_ms", "rss_increase_bytes"}, ...]}

    Example:

    >>> result = benchmark_tflite(["dense.tflite", "pruned.tflite"], runs=100)
    >>> [m["median_ms"] for m in result["models"]]
    """
    paths = [path_or_paths] if isinstance(path_or_paths, (str, os.PathLike)) else list(path_or_paths)
    if not paths:
        raise ValueError("benchmark_tflite needs at least one .tflite path.")
    if runs < 1 or warmup < 0 or num_threads < 1 or consecutive < 1:
        raise ValueError(f"need runs >= 1, warmup >= 0, num_threads >= 1 and consecutive >= 1 (got {runs}, {warmup}, "
                         f"{num_threads}, {consecutive}).")
    models, entries = [], []
    for path in paths:
        before = _rss_bytes()
        model = LiteRTModel.load(path, num_threads=num_threads, use_xnnpack=use_xnnpack)
        after = _rss_bytes()
        prepared = model.prepare(input_data if input_data is not None else random_sample(model))
        start = time.perf_counter()
        model.invoke(prepared)
        first = time.perf_counter() - start
        models.append((model, prepared))
        entries.append({"path": str(path), "file_bytes": Path(path).stat().st_size, "first_inference_ms": first * 1e3,
                        "rss_increase_bytes": None if before is None else after - before, "_times": []})
    for _ in range(warmup):
        for model, prepared in models:
            model.invoke(prepared)
    for first in range(0, runs, consecutive):
        for (model, prepared), entry in zip(models, entries):
            if consecutive > 1:
                model.invoke(prepared)
            for _ in range(min(consecutive, runs - first)):
                start = time.perf_counter()
                model.invoke(prepared)
                entry["_times"].append((time.perf_counter() - start) * 1e3)
    for entry in entries:
        times = entry.pop("_times")
        entry.update(median_ms=statistics.median(times), p90_ms=_percentile(times, 90),
                     p99_ms=_percentile(times, 99), mean_ms=statistics.fmean(times))
    return {
        "machine": {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count()},
        "settings": {"runtime": "ai_edge_litert", "num_threads": num_threads, "runs": runs, "warmup": warmup,
                     "use_xnnpack": use_xnnpack, "consecutive": consecutive},
        "versions": versions(),
        "models": entries,
    }


def format_benchmark(result):
    """A text table of a `benchmark_tflite` (or Android) result, with each model's ratios to the first.

    With aarch64 instruction counts (`instructions.add_instruction_counts`), two more columns and a note.
    """
    models = result["models"]
    counted = all("aarch64_instructions" in m for m in models)
    header = f"{'model':<40} {'bytes':>10} {'first ms':>9} {'median ms':>10} {'p90 ms':>8} {'p99 ms':>8} {'x first':>7}"
    if counted:
        header += f" {'aarch64 instr':>14} {'x first':>7}"
    lines = [header]
    for m in models:
        line = (f"{Path(m['path']).name:<40} {m.get('file_bytes') or 0:>10,} {m['first_inference_ms']:>9.3f} "
                f"{m['median_ms']:>10.4f} {m.get('p90_ms') or float('nan'):>8.4f} "
                f"{m.get('p99_ms') or float('nan'):>8.4f} {m['median_ms'] / models[0]['median_ms']:>7.3f}")
        if counted:
            line += (f" {m['aarch64_instructions']:>14,.0f} "
                     f"{m['aarch64_instructions'] / models[0]['aarch64_instructions']:>7.3f}")
        lines.append(line)
    if counted:
        lines.append(f"{result['settings']['aarch64']['cpu']}: {result['settings']['aarch64']['note']}")
    return "\n".join(lines)
