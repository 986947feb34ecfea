"""Write a .tflite and its sidecar JSON atomically, validating the model before it replaces anything.

The model bytes go to a temporary file next to the target; the validator runs on that file (through
the edge runtime, as on a device); only if it passes does the file replace `<precision>.tflite`.
A failed check, an error or Ctrl-C leaves the previous model and sidecar byte-identical.
"""
from __future__ import annotations

import hashlib
import importlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from cxredge.edge.formats.sidecar import sidecar_path
from cxredge.edge.runtime.interpreter import TFLiteModel
from cxredge.formats import SIDECAR_FORMAT
from cxredge.io import atomic_path, write_json

PIXELS = "raw uint8 RGB 0-255, gray copied to 3 channels"


def versions() -> dict[str, str]:
    out = {}
    for name, module in (("cxredge", "cxredge"), ("tensorflow", "tensorflow"), ("tf_keras", "tf_keras"),
                         ("tfmot", "tensorflow_model_optimization"), ("numpy", "numpy"),
                         ("ai_edge_litert", "ai_edge_litert")):
        try:
            out[name] = str(getattr(importlib.import_module(module), "__version__", "?"))
        except ImportError:
            out[name] = "not installed"
    return out


def write_model(path: Path, data: bytes, check: Callable[[Path], dict]) -> dict:
    """Write `data` to `path` atomically after `check(tmp_path)` passes; returns check's result
    plus the I/O specs read back from the file."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
        result = check(tmp)
        model = TFLiteModel(tmp, threads=1)
        result = {**result, "_input": model.input_spec, "_output": model.output_spec}
    return result


def sidecar(path: Path, data: bytes, variant: str, precision: str, labels: list[str], checked: dict,
            calibration: dict | None, extra: dict | None = None) -> dict:
    validation = {k: v for k, v in checked.items() if not k.startswith("_")}
    doc = {
        "format": SIDECAR_FORMAT,
        "model": path.name,
        "variant": variant,
        "precision": precision,
        "labels": list(labels),
        "input": {**checked["_input"], "pixels": PIXELS},
        "output": {**checked["_output"], "kind": "probabilities"},
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
        "calibration": calibration,
        "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "validation": validation,
    }
    if extra:
        doc.update(extra)
    write_json(sidecar_path(path), doc)
    return doc
