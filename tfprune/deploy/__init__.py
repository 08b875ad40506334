"""Deployment: TFLite export with verification, LiteRT and Android benchmarking, the aarch64 parity check.

Loaded on first use, so that benchmarking .tflite files does not import TensorFlow.
"""

import importlib

_PUBLIC = {
    "ExportReport": "tfprune.deploy.export",
    "LiteRTModel": "tfprune.deploy.litert",
    "benchmark_tflite": "tfprune.deploy.bench",
    "export_tflite": "tfprune.deploy.export",
    "format_benchmark": "tfprune.deploy.bench",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'tfprune.deploy' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
