"""The JSON sidecar next to every .tflite (`int8.tflite` -> `int8.json`). TF-free.

Written by `cxredge quantize`, read by bench / predict / export on the device. Its keys: the sidecar
section of cxredge/formats.py (SIDECAR_FORMAT).
"""
from __future__ import annotations

from pathlib import Path

from cxredge.errors import CxrError
from cxredge.formats import SIDECAR_FORMAT
from cxredge.io import read_json


def sidecar_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".json")


def read_sidecar(model_path: str | Path) -> dict | None:
    """The sidecar of a model, or None if it has none."""
    path = sidecar_path(model_path)
    if not path.is_file():
        return None
    data = read_json(path)
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise CxrError(f"{path}: not a cxredge sidecar (format {data.get('format') if isinstance(data, dict) else '?'})")
    return data


def read_labels_file(path: str | Path) -> list[str]:
    """--labels FILE: one class name per line (blank lines ignored), or a JSON list / sidecar."""
    path = Path(path)
    if not path.is_file():
        raise CxrError(f"--labels {path}: file not found")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = read_json(path)
        labels = data.get("labels") if isinstance(data, dict) else data
    else:
        labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) for x in labels):
        raise CxrError(f"--labels {path}: expected at least 2 class names")
    return labels


def model_labels(model_path: str | Path, labels_file: str | Path | None = None) -> list[str]:
    """Labels from --labels, else from the sidecar; a bare .tflite without --labels is an error."""
    if labels_file is not None:
        return read_labels_file(labels_file)
    side = read_sidecar(model_path)
    if side is None:
        raise CxrError(f"{model_path}: no sidecar {sidecar_path(model_path).name} next to it; pass --labels FILE")
    return list(side["labels"])
