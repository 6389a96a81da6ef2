"""The export formats, by name and file suffix: the command line offers them without importing
the exporter, which imports torch."""
from __future__ import annotations

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
