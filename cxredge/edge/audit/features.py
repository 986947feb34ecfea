"""What the shortcut probe and the duplicate search see of one image. TF-free, numpy only.

Every image gives two gray views: `native` (the file's own pixels, 8-bit gray, its own size: JPEG
blocks live on this grid) and `work` (224x224, as cxredge feeds the model: bilinear resize). Probe
features come in three groups, each meant to carry no diagnosis:

- borders (40): the 16-px frame of `work` (7% of each side, outside the lung field on a normal PA
  film) cut into 4 corners and 4 edge strips; per region: mean, std, share of near-black (< 8) and
  near-white (> 247) pixels, mean absolute gradient (noise / texture). Markers, collimation, padding,
  burnt-in text and the scanner's noise live here.
- histogram (39): 32-bin gray histogram of `work` (shares) and its 1/5/25/50/75/95/99th percentiles.
  Exposure, windowing and the export's contrast curve live here (so does some of the lung's opacity:
  docs/audit.md measures how much).
- jpeg_blocks (18): mean absolute difference between neighbouring pixels of `native`, per position
  modulo 8, across columns and across rows (8 + 8 values, each divided by their mean, log), and the
  log ratio of the difference at 8-pixel block boundaries (7|8, 15|16, ...) to the one inside blocks,
  for both directions. A JPEG leaves a step at every block boundary of its 8x8 grid and smooths the
  inside; a lossless image gives a flat profile (ratio ~1). The grid survives a lossless re-save (JPEG
  -> PNG), not a resize.

Near-duplicate hash: 256-bit DCT pHash of `work` (7x7 box mean -> 32x32, 2-D DCT-II, the 16x16
lowest frequencies, each bit = coefficient above the median of the 255 non-DC ones).
"""
from __future__ import annotations

import hashlib

import numpy as np

WORK = 224
BORDER = 16
HASH_THUMB = 32
HASH_FREQ = 16
HASH_BITS = HASH_FREQ * HASH_FREQ
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
HIST_BINS = 32
_E, _F = BORDER, WORK - BORDER
REGIONS = {  # (rows, cols) of `work`
    "corner_tl": (slice(0, _E), slice(0, _E)), "corner_tr": (slice(0, _E), slice(_F, WORK)),
    "corner_bl": (slice(_F, WORK), slice(0, _E)), "corner_br": (slice(_F, WORK), slice(_F, WORK)),
    "top": (slice(0, _E), slice(_E, _F)), "bottom": (slice(_F, WORK), slice(_E, _F)),
    "left": (slice(_E, _F), slice(0, _E)), "right": (slice(_E, _F), slice(_F, WORK)),
}
REGION_STATS = ("mean", "std", "dark", "bright", "gradient")
GROUP_NAMES = {
    "borders": [f"{r}_{s}" for r in REGIONS for s in REGION_STATS],
    "histogram": [f"bin{i:02d}" for i in range(HIST_BINS)] + [f"p{p}" for p in PERCENTILES],
    "jpeg_blocks": [f"{d}_phase{p}" for d in ("col", "row") for p in range(8)]
    + ["col_boundary_ratio", "row_boundary_ratio"],
}
GROUP_TITLES = {"borders": "image borders", "histogram": "the intensity histogram",
                "jpeg_blocks": "8x8 JPEG-block artifacts", "all": "all three cue groups"}
GROUPS = tuple(GROUP_NAMES)


def border_features(work: np.ndarray) -> np.ndarray:
    out = []
    for rows, cols in REGIONS.values():
        r = work[rows, cols]
        grad = (np.abs(np.diff(r, axis=0)).mean() + np.abs(np.diff(r, axis=1)).mean()) / 2
        out += [r.mean() / 255, r.std() / 255, (r < 8).mean(), (r > 247).mean(), grad / 255]
    return np.array(out, dtype=np.float64)


def histogram_features(work: np.ndarray) -> np.ndarray:
    u8 = work.astype(np.uint8, copy=False)
    hist = np.bincount(u8.ravel() >> 3, minlength=HIST_BINS) / u8.size
    cum = np.cumsum(np.bincount(u8.ravel(), minlength=256)) / u8.size
    pct = np.searchsorted(cum, np.array(PERCENTILES) / 100) / 255
    return np.concatenate([hist, pct]).astype(np.float64)


def block_features(native: np.ndarray) -> np.ndarray:
    """Block-grid profile of `native` (any size >= 16x16; smaller gives zeros)."""
    if min(native.shape) < 16:
        return np.zeros(len(GROUP_NAMES["jpeg_blocks"]))
    x = native.astype(np.float32, copy=False)
    profiles, ratios = [], []
    for axis in (1, 0):  # differences across columns, then across rows
        d = np.abs(np.diff(x, axis=axis)).mean(axis=1 - axis)  # one value per boundary position c|c+1
        n = len(d) // 8 * 8
        phase = d[:n].reshape(-1, 8).mean(axis=0) + 1e-3  # phase p: boundary between c = 8k+p and c+1
        profiles.append(np.log(phase / phase.mean()))
        ratios.append(np.log(phase[7] / phase[:7].mean()))
    return np.concatenate(profiles + [np.array(ratios)]).astype(np.float64)


def probe_features(native: np.ndarray, work: np.ndarray) -> dict[str, np.ndarray]:
    return {"borders": border_features(work), "histogram": histogram_features(work),
            "jpeg_blocks": block_features(native)}


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2 / n)
    m[0] /= np.sqrt(2)
    return m


_DCT = _dct_matrix(HASH_THUMB)[:HASH_FREQ]


def phash(work: np.ndarray) -> np.ndarray:
    """256-bit perceptual hash of a 224x224 gray image, packed into 4 uint64 words."""
    b = WORK // HASH_THUMB
    thumb = work.astype(np.float64).reshape(HASH_THUMB, b, HASH_THUMB, b).mean(axis=(1, 3))
    coef = (_DCT @ thumb @ _DCT.T).ravel()
    bits = coef > np.median(coef[1:])
    return np.packbits(bits).view(np.uint64)


def pixel_hash(native: np.ndarray) -> str:
    """Identity of the decoded 8-bit gray pixels (and their size): equal for exact duplicates."""
    h = hashlib.sha1(f"{native.shape}".encode())
    h.update(np.ascontiguousarray(native).tobytes())
    return h.hexdigest()
