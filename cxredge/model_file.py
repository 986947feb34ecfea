"""The one way cxredge opens a Keras model file: checked before any Keras code sees it.

A `.keras` file may come from elsewhere (a colleague's run, a download), so it is untrusted input
(docs/security.md). Keras deserialisation can run code in two ways, and both are refused here:
- a legacy HDF5 file (whatever its name) restores `Lambda` layers from marshalled bytecode, and tf_keras
  applies `safe_mode` to zip archives only: HDF5 is refused outright (cxredge itself writes zip only);
- a zip archive's config.json names Python modules that Keras imports (`importlib.import_module`) and
  classes it calls: every module must be Keras' own, and `Lambda` layers are refused.
The archive is then loaded with `safe_mode=True`. TF is imported only when the checks pass.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, Iterator

from cxredge.errors import CxrError

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
MAX_CONFIG_BYTES = 64 * 1024 * 1024
KERAS_MODULES = ("keras", "tf_keras")
REFUSED_CLASSES = frozenset({"Lambda"})


def _modules(node: Any) -> Iterator[tuple[str | None, str | None]]:
    """Every (module, class_name) pair in a Keras config tree."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "class_name" in item or "module" in item:
                yield item.get("module"), item.get("class_name")
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _keras_module(module: Any) -> bool:
    if module is None:
        return True
    if not isinstance(module, str):
        return False
    return any(module == m or module.startswith(m + ".") for m in KERAS_MODULES)


def check_model_file(path: str | Path) -> Path:
    """Refuse, with a one-line error naming the file, anything but a Keras zip archive of Keras' own layers."""
    path = Path(path)
    if not path.is_file():
        raise CxrError(f"{path}: model file not found")
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise CxrError(f"{path}: cannot read the model file ({exc.strerror})") from None
    if head == HDF5_MAGIC:
        raise CxrError(f"{path}: a legacy HDF5 Keras file; cxredge opens only the zip .keras format it writes "
                       "(HDF5 can carry code, docs/security.md)")
    if not zipfile.is_zipfile(path):
        raise CxrError(f"{path}: not a Keras .keras archive (a zip with config.json)")
    try:
        with zipfile.ZipFile(path) as zf:
            try:
                info = zf.getinfo("config.json")
            except KeyError:
                raise CxrError(f"{path}: not a Keras .keras archive (no config.json inside)") from None
            if info.file_size > MAX_CONFIG_BYTES:
                raise CxrError(f"{path}: config.json is {info.file_size} bytes, more than a model needs")
            config = json.loads(zf.read(info).decode("utf-8"))
    except (zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError, OSError, RuntimeError) as exc:
        raise CxrError(f"{path}: unreadable .keras archive ({exc})") from None
    for module, class_name in _modules(config):
        if class_name in REFUSED_CLASSES:
            raise CxrError(f"{path}: contains a {class_name} layer, which can carry code; refused "
                           "(docs/security.md)")
        if not _keras_module(module):
            raise CxrError(f"{path}: config.json names the module {str(module)[:80]!r}, not Keras'; refused "
                           "(docs/security.md)")
    return path


def load_keras_model(path: str | Path):
    """`keras.models.load_model(path, compile=False, safe_mode=True)` after `check_model_file`."""
    path = check_model_file(path)
    from cxredge.keras import keras

    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except (ValueError, OSError, TypeError, KeyError) as exc:
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise CxrError(f"{path}: not a loadable Keras model ({first})") from None
