"""Deployment: TFLite export with verification, LiteRT and Android benchmarking, the aarch64 parity check."""

from tfprune.deploy.export import ExportReport, export_tflite
from tfprune.deploy.litert import LiteRTModel

__all__ = ["ExportReport", "LiteRTModel", "export_tflite"]
