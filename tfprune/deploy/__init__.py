"""Deployment: TFLite export with verification, LiteRT and Android benchmarking, the aarch64 parity check and
aarch64 instruction counts, and the devices that measure a model's cost (`devices`).

Loaded on first use, so that benchmarking .tflite files does not import TensorFlow.
"""

from tfprune.lazy import attribute_loader

_PUBLIC = {
    "AndroidDevice": "tfprune.deploy.devices",
    "LocalLiteRT": "tfprune.deploy.devices",
    "QemuInstructions": "tfprune.deploy.devices",
    "ExportReport": "tfprune.deploy.export",
    "LiteRTModel": "tfprune.deploy.litert",
    "benchmark_tflite": "tfprune.deploy.bench",
    "count_instructions": "tfprune.deploy.instructions",
    "export_tflite": "tfprune.deploy.export",
    "format_benchmark": "tfprune.deploy.bench",
    "format_profiles": "tfprune.deploy.op_profile",
    "plot_profiles": "tfprune.deploy.op_profile",
    "profile_tflite": "tfprune.deploy.op_profile",
}
__all__ = sorted(_PUBLIC)
__getattr__ = attribute_loader("tfprune.deploy", globals(), _PUBLIC)
