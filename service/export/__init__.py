"""Model files: writers and readers of a model kind's params in ONNX, safetensors and JSON.

One registry entry per format (:data:`FORMATS`); every format writes a :class:`Bundle` (the
kind, its params and where they came from). Readers only parse a file's structure and report
problems as :class:`FileProblem`; whether the kind, config and shapes make a valid model is the
caller's question (the API checks an import exactly as it checks a create request).
"""

from __future__ import annotations

from service.export import json_format, onnx_format, safetensors_format
from service.export.formats import (
    FORMATS,
    Bundle,
    FileProblem,
    Format,
    Limits,
    Parsed,
    read_bundle,
)

__all__ = ["FORMATS", "Bundle", "FileProblem", "Format", "Limits", "Parsed", "json_format",
           "onnx_format", "read_bundle", "safetensors_format"]
