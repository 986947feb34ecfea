"""The JSON sidecar next to every .tflite (`int8.tflite` -> `int8.json`). TF-free.

Written by `cxredge quantize`, read by bench / predict / explain / export on the device. Its keys: the sidecar
section of cxredge/formats.py (SIDECAR_FORMAT).

A sidecar is never taken on trust (docs/security.md): `read_sidecar` checks its schema (`check_sidecar`:
labels a list of >= 2 unique, non-empty, one-line names; sha256 64 hex digits; size_bytes an integer;
variant / precision plain names; input / output / validation / calibration / ood objects or absent) and
then that the model file next to it has exactly that size and sha256. Only then do bench, predict and
explain use its labels, OOD reference and hash. Every error names the sidecar (and the model) and the key.
"""
from __future__ import annotations

import re
from pathlib import Path

from cxredge.errors import CxrError
from cxredge.formats import SIDECAR_FORMAT
from cxredge.io import read_json, sha256_file

MAX_LABEL_CHARS = 200
SHA256 = re.compile(r"[0-9a-f]{64}")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")  # a variant or precision: also a file-name part
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
OPTIONAL_OBJECTS = ("input", "output", "validation", "calibration", "ood", "versions")

_verified: dict[tuple, str] = {}  # (model stat, sidecar stat) -> sha256 already checked in this process


def sidecar_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".json")


def check_labels(labels, where: str) -> list[str]:
    """A label list: >= 2 unique, non-empty, one-line strings. CxrError names `where` (file and key)."""
    if not isinstance(labels, list):
        raise CxrError(f"{where}: expected a list of class names, got {type(labels).__name__}")
    if len(labels) < 2:
        raise CxrError(f"{where}: expected at least 2 class names, got {len(labels)}")
    for i, lab in enumerate(labels):
        if not isinstance(lab, str):
            raise CxrError(f"{where}[{i}]: class names are strings, got {type(lab).__name__}")
        if not lab.strip() or lab != lab.strip():
            raise CxrError(f"{where}[{i}]: class name {lab!r} is empty or has surrounding spaces")
        if CONTROL.search(lab) or len(lab) > MAX_LABEL_CHARS:
            raise CxrError(f"{where}[{i}]: class name {lab[:40]!r} has control characters or is over "
                           f"{MAX_LABEL_CHARS} characters")
    seen: dict[str, int] = {}
    for i, lab in enumerate(labels):
        other = labels[seen.setdefault(lab.casefold(), i)]
        if seen[lab.casefold()] != i:
            twice = "appears twice" if other == lab else f"and {other!r} differ only by case"
            raise CxrError(f"{where}: class name {lab!r} {twice} (each output needs its own name)")
    return list(labels)


def check_sidecar(data, path: Path) -> dict:
    """The sidecar's schema, or CxrError naming the file and the key at fault."""
    if not isinstance(data, dict):
        raise CxrError(f"{path}: not a cxredge sidecar (expected a JSON object, got {type(data).__name__})")
    if data.get("format") != SIDECAR_FORMAT:
        raise CxrError(f"{path}: not a cxredge sidecar (format {str(data.get('format'))[:40]!r}, "
                       f"expected {SIDECAR_FORMAT!r})")
    check_labels(data.get("labels"), f"{path}: labels")
    sha = data.get("sha256")
    if not isinstance(sha, str) or not SHA256.fullmatch(sha):
        raise CxrError(f"{path}: sha256 must be 64 lowercase hex digits (the model file's hash)")
    size = data.get("size_bytes")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise CxrError(f"{path}: size_bytes must be a non-negative integer (the model file's size)")
    for key in ("variant", "precision"):
        value = data.get(key)
        if value is not None and (not isinstance(value, str) or not NAME.fullmatch(value)):
            raise CxrError(f"{path}: {key} must be a plain name (letters, digits, _ . + -), got {str(value)[:40]!r}")
    if data.get("model") is not None and not isinstance(data["model"], str):
        raise CxrError(f"{path}: model must be the .tflite's file name")
    for key in OPTIONAL_OBJECTS:
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise CxrError(f"{path}: {key} must be an object, got {type(data[key]).__name__}")
    return data


def verify_model(model_path: Path, side: dict, path: Path) -> str:
    """The model file's sha256, after checking its size and hash against the sidecar's."""
    model_path = Path(model_path)
    st, ss = model_path.stat(), path.stat()
    key = (str(model_path.resolve()), st.st_size, st.st_mtime_ns, str(path.resolve()), ss.st_size, ss.st_mtime_ns)
    if key in _verified:
        return _verified[key]
    if st.st_size != side["size_bytes"]:
        raise CxrError(f"{model_path}: {st.st_size} bytes, but its sidecar {path} says {side['size_bytes']}: "
                       "the model is not the one the sidecar describes (replace both, or remove the sidecar "
                       "and pass --labels)")
    sha = sha256_file(model_path)
    if sha != side["sha256"]:
        raise CxrError(f"{model_path}: sha256 {sha[:12]} differs from its sidecar {path} ({side['sha256'][:12]}): "
                       "the model is not the one the sidecar describes (replace both, or remove the sidecar "
                       "and pass --labels)")
    _verified[key] = sha
    return sha


def read_sidecar(model_path: str | Path) -> dict | None:
    """The sidecar of a model, checked (schema, then the model's size and sha256), or None if it has none."""
    path = sidecar_path(model_path)
    if not path.is_file():
        return None
    side = check_sidecar(read_json(path), path)
    verify_model(Path(model_path), side, path)
    return side


def read_labels_file(path: str | Path) -> list[str]:
    """--labels FILE: one class name per line (blank lines ignored), or a JSON list / sidecar."""
    path = Path(path)
    if not path.is_file():
        raise CxrError(f"--labels {path}: file not found")
    if path.suffix == ".json":
        data = read_json(path)
        labels = data.get("labels") if isinstance(data, dict) else data
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError) as exc:
            raise CxrError(f"--labels {path}: not a UTF-8 text file ({type(exc).__name__})") from None
        labels = [line.strip() for line in text.splitlines() if line.strip()]
    return check_labels(labels, f"--labels {path}")


def model_labels(model_path: str | Path, labels_file: str | Path | None = None) -> list[str]:
    """Labels from --labels, else from the (verified) sidecar; a bare .tflite without --labels is an error."""
    if labels_file is not None:
        return read_labels_file(labels_file)
    side = read_sidecar(model_path)
    if side is None:
        raise CxrError(f"{model_path}: no sidecar {sidecar_path(model_path).name} next to it; pass --labels FILE")
    return list(side["labels"])
