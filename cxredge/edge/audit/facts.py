"""What the files themselves say: format, mode, size, bytes, JPEG quality; and the two gray views the
probe and the hash need (features.py). Summaries per split and class. TF-free.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cxredge.edge.audit.features import WORK
from cxredge.edge.audit.jpeg import estimate_quality
from cxredge.edge.data.dicom import is_dicom
from cxredge.edge.data.images import image_error, open_image, to_8bit


@dataclass(frozen=True)
class FileFacts:
    format: str  # PNG, JPEG, TIFF, BMP, ... (what the bytes are, whatever the suffix says)
    mode: str  # L, RGB, RGBA, I;16, P, ...
    width: int
    height: int
    bytes: int
    jpeg_quality: int | None = None
    jpeg_exact: bool | None = None  # the tables are exactly libjpeg's for that quality
    colour: bool | None = None  # RGB(A) whose channels really differ (None: not an RGB file)
    view_position: str | None = None  # DICOM View Position (PA, AP, LL...), a known shortcut

    def quality_label(self) -> str:
        if self.jpeg_quality is None:
            return "-"
        return f"{self.jpeg_quality}" if self.jpeg_exact else f"~{self.jpeg_quality}"


def header_facts(im: Image.Image, path: Path) -> FileFacts:
    """Facts from the header alone (no pixel decoding)."""
    q = estimate_quality(getattr(im, "quantization", None)) if im.format == "JPEG" else None
    return FileFacts(format=im.format or path.suffix.lstrip(".").upper(), mode=im.mode, width=im.size[0],
                     height=im.size[1], bytes=path.stat().st_size,
                     jpeg_quality=q["quality"] if q else None, jpeg_exact=q["exact"] if q else None)


def dicom_facts(path: Path) -> FileFacts:
    """A DICOM file's facts: format DICOM, mode '<photometric> <bits stored>-bit', its View Position."""
    from cxredge.edge.data.dicom import read_facts

    d = read_facts(path)
    return FileFacts(format="DICOM", mode=f"{d.photometric} {d.bits_stored}-bit", width=d.columns, height=d.rows,
                     bytes=path.stat().st_size, view_position=d.view_position or None)


def read_header(path: Path) -> FileFacts:
    if is_dicom(path):
        return dicom_facts(path)
    with _open(path) as im:
        return header_facts(im, path)


def read_image(path: Path) -> tuple[FileFacts, np.ndarray, np.ndarray]:
    """(facts, native 8-bit gray at the file's size, 224x224 gray work view); CxrError names a bad file."""
    if is_dicom(path):  # the decoder's grayscale pipeline gives the native 8-bit view
        from cxredge.edge.data.dicom import decode

        pixels, _ = decode(path)
        native = Image.fromarray(pixels, "L" if pixels.ndim == 2 else "RGB").convert("L")
        return dicom_facts(path), np.asarray(native), work_view(native)
    with _open(path) as im:
        facts = header_facts(im, path)
        try:
            im.load()
            native, colour = gray(im)
        except Exception as exc:  # any decoder failure on a damaged file: one line, never a traceback
            raise image_error(path, exc) from None
    if colour is not None:
        facts = FileFacts(**{**facts.__dict__, "colour": colour})
    return facts, np.asarray(native), work_view(native)


def gray(im: Image.Image) -> tuple[Image.Image, bool | None]:
    """8-bit L (16-bit stretched as cxredge's decoder does) and whether an RGB file is really colour."""
    im = to_8bit(im)
    colour = None
    if im.mode in ("RGB", "RGBA"):
        rgb = np.asarray(im.convert("RGB"), dtype=np.int16)
        colour = bool(np.abs(rgb[..., 0] - rgb[..., 1]).max() > 2 or np.abs(rgb[..., 1] - rgb[..., 2]).max() > 2)
    return (im if im.mode == "L" else im.convert("L")), colour


def work_view(native: Image.Image | np.ndarray) -> np.ndarray:
    im = native if isinstance(native, Image.Image) else Image.fromarray(native)
    if im.size != (WORK, WORK):
        im = im.resize((WORK, WORK), Image.BILINEAR)
    return np.asarray(im)


def _open(path: Path) -> Image.Image:
    return open_image(path)  # the size limit and decompression-bomb checks of every decoder (images.py)


def summarise(facts: list[FileFacts]) -> dict:
    """Counts and ranges of one group of files (a class in a split, or a class over all splits)."""
    if not facts:
        return {"n": 0}
    w = np.array([f.width for f in facts])
    h = np.array([f.height for f in facts])
    aspect = w / h
    quality = Counter(f.quality_label() for f in facts if f.jpeg_quality is not None)
    out = {
        "n": len(facts),
        "formats": dict(Counter(f.format for f in facts).most_common()),
        "modes": dict(Counter(f.mode for f in facts).most_common()),
        "width": _range(w), "height": _range(h), "aspect": _range(aspect, 3),
        "sizes": {f"{a}x{b}": n for (a, b), n in Counter(zip(w.tolist(), h.tolist())).most_common(5)},
        "bytes_mean": int(np.mean([f.bytes for f in facts])),
        "jpeg_quality": dict(sorted(quality.items(), key=lambda kv: -kv[1])),
    }
    colour = [f.colour for f in facts if f.colour is not None]
    if colour:
        out["rgb_really_colour"] = int(sum(colour))
    return out


def _range(v: np.ndarray, digits: int = 0) -> dict:
    r = (lambda x: round(float(x), digits)) if digits else (lambda x: int(round(float(x))))
    return {"min": r(v.min()), "median": r(np.median(v)), "max": r(v.max())}


def categories(f: FileFacts) -> dict[str, str]:
    """Low-cardinality facts a shortcut could hide in (checks.format_cues)."""
    side = max(f.width, f.height)
    aspect = f.width / f.height
    return {
        "file format": f.format,
        "image mode": f.mode,
        "JPEG quality": f.quality_label() if f.jpeg_quality is not None else "not JPEG",
        "image size": next(label for limit, label in ((256, "< 256 px"), (512, "256-511 px"), (1024, "512-1023 px"),
                                                      (2048, "1024-2047 px"), (10 ** 9, ">= 2048 px")) if side < limit),
        "aspect ratio": "portrait" if aspect < 0.95 else "landscape" if aspect > 1.05 else "square",
        "view position": f.view_position or "not recorded",
    }
