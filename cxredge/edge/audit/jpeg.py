"""JPEG quality from the quantization tables a file carries. TF-free, numpy only.

libjpeg (the IJG library, which Pillow, most cameras' desktop software and ImageMagick use) builds its
tables from the two example tables of the JPEG standard (ITU-T T.81, Annex K, tables K.1 and K.2),
scaled by one factor derived from the quality q in 1..100 (jcparam.c, `jpeg_quality_scaling`):

    scale = 5000 / q        if q < 50
    scale = 200 - 2 q       otherwise
    entry = clamp((base * scale + 50) // 100, 1, 255)    (255: baseline tables)

So an IJG-made file's table equals one of 100 candidates. We build all of them and take the quality
whose luminance table (and chrominance table, when the file has one) is closest in mean absolute
difference. A distance of 0 is an exact match; anything else (an encoder with its own tables, e.g. a
camera, Photoshop, or an optimised encoder) gets the nearest IJG quality, flagged `exact: False`.

Pillow >= 8.3 returns tables in natural (row-major) order, older versions in zig-zag order: both
orders are tried.
"""
from __future__ import annotations

import numpy as np

# ITU-T T.81 Annex K, table K.1 (luminance) and K.2 (chrominance), natural order.
LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.int64)
CHROMA = np.array([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32, dtype=np.int64)


def _zigzag() -> np.ndarray:
    """Index k of the zig-zag scan -> natural (row-major) index."""
    order = sorted(((r, c) for r in range(8) for c in range(8)),
                   key=lambda rc: (rc[0] + rc[1], rc[0] if (rc[0] + rc[1]) % 2 else rc[1]))
    return np.array([r * 8 + c for r, c in order])


ZIGZAG = _zigzag()


def ijg_table(base: np.ndarray, quality: int) -> np.ndarray:
    """The table libjpeg writes for `quality` (1..100), baseline-clamped to 1..255."""
    if not 1 <= quality <= 100:
        raise ValueError(f"quality {quality}: expected 1..100")
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((base * scale + 50) // 100, 1, 255)


QUALITIES = np.arange(1, 101)
CANDIDATES = {name: np.stack([ijg_table(base, q) for q in QUALITIES])
              for name, base in (("luma", LUMA), ("chroma", CHROMA))}


def estimate_quality(quantization: dict | None) -> dict | None:
    """{quality, exact, distance} from Pillow's `im.quantization` ({table id: 64 values}); None without tables."""
    if not quantization:
        return None
    tables = [np.asarray(quantization[k], dtype=np.int64) for k in sorted(quantization)]
    if any(t.size != 64 for t in tables):
        return None
    best = None
    for order in (None, ZIGZAG):  # natural order, then the tables read as zig-zag
        luma = tables[0] if order is None else _natural(tables[0])
        cost = np.abs(CANDIDATES["luma"] - luma).mean(axis=1)
        if len(tables) > 1:
            chroma = tables[1] if order is None else _natural(tables[1])
            cost = (cost + np.abs(CANDIDATES["chroma"] - chroma).mean(axis=1)) / 2
        i = int(np.argmin(cost))  # ties: the lowest quality (the first candidate)
        if best is None or cost[i] < best[1]:
            best = (int(QUALITIES[i]), float(cost[i]))
    return {"quality": best[0], "exact": best[1] == 0.0, "distance": round(best[1], 3)}


def _natural(zigzag_values: np.ndarray) -> np.ndarray:
    out = np.empty(64, dtype=np.int64)
    out[ZIGZAG] = zigzag_values
    return out
