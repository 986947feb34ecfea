"""Decode an X-ray into the model's input: raw uint8 RGB pixels, 224x224x3. TF-free.

Any size, PNG or JPEG (anything Pillow reads), grayscale or colour; 16-bit grayscale is scaled to 8
bits; gray is copied to 3 channels; resizing is bilinear. Scaling to [-1, 1] happens inside the model.
DICOM (.dcm, or any file with the DICM preamble) goes through cxredge.edge.dicom's grayscale pipeline
first, then the same resize: every verb decodes through `load_image`, so train and the device see the
same pixels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cxredge.edge.dicom import DICOM_SUFFIXES, RASTER_SUFFIXES, is_dicom
from cxredge.errors import CxrError

IMG_SIZE = 224
IMAGE_SUFFIXES = {*RASTER_SUFFIXES, *DICOM_SUFFIXES}


def is_image_file(path: Path) -> bool:
    """A file the decoder takes: an image suffix, or no suffix and the DICOM preamble (PACS exports)."""
    if not path.is_file():
        return False
    suffix = path.suffix.lower()
    return suffix in IMAGE_SUFFIXES or (suffix == "" and is_dicom(path))


def load_image(path: str | Path, size: int = IMG_SIZE) -> np.ndarray:
    """Return a (size, size, 3) uint8 array, or raise CxrError naming the file."""
    path = Path(path)
    if is_dicom(path):
        return _from_dicom(path, size)
    try:
        with Image.open(path) as im:
            im.load()
            im = _to_rgb(im)
            if im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise CxrError(f"{path}: image not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise CxrError(f"{path}: unreadable or corrupt image ({type(exc).__name__}: {exc})") from None


def _from_dicom(path: Path, size: int) -> np.ndarray:
    from cxredge.edge.dicom import decode

    pixels, _ = decode(path)
    im = Image.fromarray(pixels, "L" if pixels.ndim == 2 else "RGB")
    if im.size != (size, size):  # resizing gray then copying it to 3 channels = resizing the RGB copy, 3x cheaper
        im = im.resize((size, size), Image.BILINEAR)
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def to_8bit(im: Image.Image) -> Image.Image:
    """16/32-bit grayscale stretched min..max to 8-bit L; any other mode as it is."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        im = Image.fromarray(arr.round().astype(np.uint8), "L")
    return im


def _to_rgb(im: Image.Image) -> Image.Image:
    im = to_8bit(im)
    return im if im.mode == "RGB" else im.convert("RGB")  # L -> RGB copies gray into 3 channels


def load_batch(paths: list[Path], size: int = IMG_SIZE) -> np.ndarray:
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, p in enumerate(paths):
        out[i] = load_image(p, size)
    return out
