"""The size limit of one image, checked from its header before any decoder (Pillow's, DICOM's) decodes a pixel.

60 megapixels: a 43 x 43 cm detector at 70 um is 37 MP, so every real chest film fits, while a
decompression bomb (a small file that decodes to gigabytes) is refused (docs/security.md). TF-free, leaf.
"""
from __future__ import annotations

from pathlib import Path

from cxredge.errors import CxrError

MAX_PIXELS = 60_000_000


def check_size(path: Path, width: int, height: int) -> None:
    """CxrError unless 1 <= width x height <= MAX_PIXELS: call it with a header's size before decoding
    (any decoder: Pillow's here, DICOM's Rows x Columns)."""
    if width * height > MAX_PIXELS or width < 1 or height < 1:
        raise CxrError(f"{path}: {width}x{height} pixels is outside 1 pixel..{MAX_PIXELS // 1_000_000} megapixels "
                       "(the limit for one image; a real chest X-ray is under 40 MP)")
