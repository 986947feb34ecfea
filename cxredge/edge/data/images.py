"""Decode an X-ray into the model's input: raw uint8 RGB pixels, 224x224x3. TF-free.

Any size, PNG or JPEG (anything Pillow reads), grayscale or colour; 16-bit grayscale is scaled to 8
bits; gray is copied to 3 channels; resizing is bilinear. Scaling to [-1, 1] happens inside the model.
DICOM (.dcm, or any file with the DICM preamble) goes through cxredge.edge.data.dicom's grayscale pipeline
first, then the same resize: every verb decodes through `load_image`, so train and the device see the
same pixels.

Hostile files (docs/security.md): `open_image` reads the header only and refuses an image over
MAX_PIXELS (60 megapixels: a 43 x 43 cm detector at 70 um is 37 MP, so every real chest film fits) before
any pixel is decoded, and turns Pillow's DecompressionBombWarning / DecompressionBombError into the same
one-line CxrError; any other decoder failure on a damaged file is one too. A gray image is resized before
it is copied to 3 channels (the same pixels, a third of the memory).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from cxredge.edge.data.dicom import DICOM_SUFFIXES, RASTER_SUFFIXES, is_dicom
from cxredge.edge.data.limits import MAX_PIXELS, check_size  # noqa: F401 - the limit every decoder checks
from cxredge.errors import CxrError

IMG_SIZE = 224
IMAGE_SUFFIXES = {*RASTER_SUFFIXES, *DICOM_SUFFIXES}


def is_image_file(path: Path) -> bool:
    """A file the decoder takes: an image suffix, or no suffix and the DICOM preamble (PACS exports)."""
    if not path.is_file():
        return False
    suffix = path.suffix.lower()
    return suffix in IMAGE_SUFFIXES or (suffix == "" and is_dicom(path))


def image_error(path: Path, exc: BaseException) -> CxrError:
    """The one-line error for a file Pillow could not decode."""
    if isinstance(exc, FileNotFoundError):
        return CxrError(f"{path}: image not found")
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return CxrError(f"{path}: refused, a decompression bomb ({' '.join(str(exc).split())[:160]})")
    text = " ".join(str(exc).split())[:160]
    return CxrError(f"{path}: unreadable or corrupt image ({type(exc).__name__}: {text})")


def open_image(path: str | Path) -> Image.Image:
    """Image.open (header only) with the size limit checked; CxrError names the file. Close it (`with`)."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
    except Exception as exc:  # Pillow parses untrusted bytes: any failure is a bad file, never a traceback
        raise image_error(path, exc) from None
    try:
        check_size(path, *im.size)
    except CxrError:
        im.close()
        raise
    return im


def load_image(path: str | Path, size: int = IMG_SIZE) -> np.ndarray:
    """Return a (size, size, 3) uint8 array, or raise CxrError naming the file."""
    path = Path(path)
    if is_dicom(path):
        return _from_dicom(path, size)
    with open_image(path) as im:
        try:
            im.load()
            im = to_8bit(im)
            if im.mode not in ("L", "RGB"):
                im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()  # L -> RGB copies gray into 3 channels
        except Exception as exc:
            raise image_error(path, exc) from None


def _from_dicom(path: Path, size: int) -> np.ndarray:
    from cxredge.edge.data.dicom import decode

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


def load_batch(paths: list[Path], size: int = IMG_SIZE) -> np.ndarray:
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, p in enumerate(paths):
        out[i] = load_image(p, size)
    return out
