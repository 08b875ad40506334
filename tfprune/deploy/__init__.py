"""Deployment: TFLite export with verification, LiteRT and Android benchmarking, the aarch64 parity check."""

from tfprune.deploy.bench import benchmark_tflite, format_benchmark
from tfprune.deploy.export import ExportReport, export_tflite
from tfprune.deploy.litert import LiteRTModel

__all__ = ["ExportReport", "LiteRTModel", "benchmark_tflite", "export_tflite", "format_benchmark"]
