"""Out-of-distribution guard: does an input look like the images the model was validated on? TF-free.

Five statistics of the decoded model input (uint8 RGB, the pixels the model sees) are compared with
their distribution on the validation split, which `cxredge quantize` stores in every sidecar (`ood`):

  colour    mean spread between the R, G and B channels, in 0-1 (a gray film: 0)
  contrast  log of the gray-level standard deviation (a flat image: very low)
  edges     log of (mean absolute neighbour difference / standard deviation): the share of fine
            detail (uniform noise: high; a blurred or flat image: low)
  layout    correlation of the 8x8 mean-intensity grid with the reference's median grid (an inverted
            or rotated film, a photo: low)
  flat      share of pixels whose right and lower neighbours are within 1 gray level (a graphic, a
            padded image: high)

Each becomes a robust z-score, (value - val median) / max(1.4826 MAD, floor), counted only on the
side(s) that mean "unlike an X-ray"; an image's score is its largest z, and the statistic(s) over the
threshold are the reason. The threshold keeps `keep` (99%) of the val images: the
ceil((n + 1) * keep)-th smallest val score (a conformal quantile), at least `MIN_THRESHOLD`.
Why these and not the model's output: docs/ood-guard.md (measured in benchmarks/ood/ood_guard.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from cxredge.formats import OOD_FORMAT

KEEP = 0.99
MIN_THRESHOLD = 3.5   # the usual robust-z outlier cut (Iglewicz & Hoaglin); binds only on tiny val splits
GRID = 8
CHUNK = 64
EPS = 1e-3
TIE = 1e-9            # added to the threshold: a val image at exactly the threshold is kept on every machine
FLAT_SD = 0.5          # gray levels: below it an image (or its grid) is flat, and edges / layout are undefined


@dataclass(frozen=True)
class Feature:
    name: str
    side: str              # "high" | "low" | "both": which side means "unlike the reference"
    floor: float           # smallest scale, in the feature's units (a constant feature on val has MAD 0)
    low: str | None        # the reason given when the value is too low
    high: str | None       # ... too high


FEATURES = (
    Feature("colour", "high", 0.01, None, "colour image"),
    Feature("contrast", "both", 0.05, "flat or low-contrast image", "extreme contrast"),
    Feature("edges", "both", 0.05, "too smooth (blurred?)", "noise-like texture"),
    Feature("layout", "low", 0.02, "unusual layout (inverted, rotated, not a chest film?)", None),
    Feature("flat", "high", 0.02, None, "large uniform areas (a graphic? padding?)"),
)
NAMES = tuple(f.name for f in FEATURES)


def _as_batch(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3) images, got shape {x.shape}")
    return x


def grids(gray: np.ndarray, k: int = GRID) -> np.ndarray:
    """(N, H, W) gray -> (N, k*k) mean-intensity grids, each z-normalised (NaN for a flat grid: no layout)."""
    n, h, w = gray.shape
    hh, ww = h // k * k, w // k * k
    g = gray[:, :hh, :ww].reshape(n, k, hh // k, k, ww // k).mean(axis=(2, 4)).reshape(n, k * k)
    g = g - g.mean(axis=1, keepdims=True)
    sd = g.std(axis=1, keepdims=True)
    return np.where(sd > FLAT_SD, g / np.maximum(sd, FLAT_SD), np.nan)


def _chunk_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """colour, contrast, edges, flat (N, 4) and the z-normalised grids of one chunk of images."""
    r, g, b = (np.ascontiguousarray(x[..., c]) for c in range(3))  # reductions over a size-3 last axis are slow
    colour = (np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)).mean(axis=(1, 2)) / 255.0
    gray = (r.astype(np.float32) + g + b) / 3.0
    sd = gray.std(axis=(1, 2))
    dx = np.abs(np.diff(gray, axis=2))
    dy = np.abs(np.diff(gray, axis=1))
    grad = (dx.mean(axis=(1, 2)) + dy.mean(axis=(1, 2))) / 2
    flat = ((dx[:, :-1, :] <= 1.0) & (dy[:, :, :-1] <= 1.0)).mean(axis=(1, 2))
    contrast = np.log(sd / 255.0 + EPS)
    edges = np.where(sd > FLAT_SD, np.log(grad / np.maximum(sd, FLAT_SD) + EPS), np.nan)  # undefined when flat
    return np.stack([colour, contrast, edges, flat], axis=1).astype(np.float64), grids(gray)


def raw_statistics(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All images, in chunks (memory stays ~CHUNK images of float32): (N, 4) statistics, (N, GRID^2) grids."""
    x = _as_batch(images)
    parts = [_chunk_stats(x[i:i + CHUNK]) for i in range(0, len(x), CHUNK)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


class Statistics:
    """raw_statistics() of images handed over one at a time (a streamed pass over a split): computed CHUNK
    images at a time, so the numbers are raw_statistics' over all of them, with one chunk of pixels held."""

    def __init__(self):
        self._chunk: list[np.ndarray] = []
        self._parts: list[tuple[np.ndarray, np.ndarray]] = []
        self.image_size: int | None = None
        self.n = 0

    @classmethod
    def of(cls, images: np.ndarray) -> "Statistics":
        out = cls()
        x = _as_batch(images)
        out._parts, out.image_size, out.n = [raw_statistics(x)], int(x.shape[1]), len(x)
        return out

    def add(self, image: np.ndarray) -> None:
        """One (H, W, 3) image; its pixels are dropped once its chunk is computed."""
        self.image_size = int(image.shape[0]) if self.image_size is None else self.image_size
        self._chunk.append(image)
        self.n += 1
        if len(self._chunk) == CHUNK:
            self._flush()

    def _flush(self) -> None:
        if self._chunk:
            self._parts.append(raw_statistics(np.stack(self._chunk)))
            self._chunk = []

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(N, 4) statistics and (N, GRID^2) grids, as raw_statistics returns them."""
        self._flush()
        if len(self._parts) > 1:
            self._parts = [(np.concatenate([p[0] for p in self._parts]), np.concatenate([p[1] for p in self._parts]))]
        return self._parts[0] if self._parts else (np.empty((0, 4)), np.empty((0, GRID * GRID)))


def checked_split(ds, split: str, skip_bad: bool = False, progress=None, limit: int | None = None):
    """A split checked once (dataset.index_split: skips, errors) with this guard's Statistics gathered from
    the same decodes, no pixels kept: what quantize's validation and bench both need. -> (Split, Statistics)."""
    from cxredge.edge.data.dataset import index_split  # here: predict reads the guard and no dataset

    stats = Statistics()
    index = index_split(ds, split, skip_bad=skip_bad, progress=progress, limit=limit,
                        on_image=lambda _split, _path, _label, image: stats.add(image), hash_pixels=False)
    return index, stats


def statistics(images) -> Statistics:
    """Statistics as they are; an (N, H, W, 3) array -> its Statistics."""
    return images if isinstance(images, Statistics) else Statistics.of(images)


def features(images: np.ndarray, template: np.ndarray) -> np.ndarray:
    """(N, 5) features in NAMES order; layout is the correlation with `template` (a z-normalised grid)."""
    stats, g = raw_statistics(images)
    return _assemble(stats, g, np.asarray(template, dtype=np.float64))


def _assemble(stats: np.ndarray, g: np.ndarray, template: np.ndarray) -> np.ndarray:
    layout = g @ template / g.shape[1]
    return np.column_stack([stats[:, 0], stats[:, 1], stats[:, 2], layout, stats[:, 3]])


def _template(g: np.ndarray) -> np.ndarray:
    """The median grid of the images that have one, z-normalised (zeros when none has)."""
    ok = ~np.isnan(g).any(axis=1)
    if not ok.any():
        return np.zeros(g.shape[1])
    t = np.median(g[ok], axis=0)
    sd = t.std()
    return (t - t.mean()) / sd if sd > 1e-6 else np.zeros_like(t)


def _robust(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per feature: the median and max(1.4826 MAD, floor), over the images where it is defined."""
    median, scale = np.zeros(len(FEATURES)), np.array([f.floor for f in FEATURES], dtype=np.float64)
    for j in range(len(FEATURES)):
        col = feats[:, j][~np.isnan(feats[:, j])]
        if len(col):
            median[j] = np.median(col)
            scale[j] = max(scale[j], 1.4826 * float(np.median(np.abs(col - median[j]))))
    return median, scale


def conformal_threshold(scores: np.ndarray, keep: float = KEEP) -> float:
    """The ceil((n+1) keep)-th smallest score (the largest when that index is past n), >= MIN_THRESHOLD."""
    s = np.sort(np.asarray(scores, dtype=np.float64))
    k = min(math.ceil((len(s) + 1) * keep), len(s))
    return float(max(s[k - 1], MIN_THRESHOLD))


@dataclass(frozen=True)
class Reference:
    """What the model's inputs looked like (stored as the sidecar's `ood` key) and its check."""
    median: tuple[float, ...]
    scale: tuple[float, ...]
    template: tuple[float, ...]
    threshold: float
    split: str
    n: int
    input_size: int
    keep: float = KEEP
    val_flagged: int = 0
    quantiles: dict | None = None   # {feature: [q0.5, q5, q50, q95, q99.5]} on val, for the docs and the curious

    def z(self, feats: np.ndarray) -> np.ndarray:
        """Signed robust z per feature; NaN where a feature is undefined (edges, layout of a flat image)."""
        return (np.atleast_2d(feats) - np.array(self.median)) / np.array(self.scale)

    def sided(self, z: np.ndarray) -> np.ndarray:
        """z counted on the meaningful side(s) only (>= 0, undefined = 0): the per-feature evidence of 'unlike'."""
        z = np.nan_to_num(z, nan=0.0)
        out = np.empty_like(z)
        for j, f in enumerate(FEATURES):
            out[:, j] = {"high": np.maximum(z[:, j], 0), "low": np.maximum(-z[:, j], 0),
                         "both": np.abs(z[:, j])}[f.side]
        return out

    def scores(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per image: the score (max sided z) and the signed z of every feature (N, 5)."""
        return self.scores_of(*raw_statistics(images))

    def scores_of(self, stats: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """scores() from raw_statistics() computed once (bench: one pass over the images, many references)."""
        z = self.z(_assemble(stats, g, np.array(self.template)))
        return self.sided(z).max(axis=1), z

    def verdicts(self, score: np.ndarray, z: np.ndarray) -> list["Verdict"]:
        return [self.verdict(float(s), zi) for s, zi in zip(score, z)]

    def check(self, images: np.ndarray) -> list["Verdict"]:
        return self.verdicts(*self.scores(images))

    def verdict(self, score: float, z: np.ndarray) -> "Verdict":
        sided = self.sided(z[None])[0]
        reasons = []
        for j in np.argsort(-sided):
            if sided[j] <= self.threshold:
                break
            f = FEATURES[j]
            reasons.append(f.low if z[j] < 0 else f.high)
        return Verdict(score <= self.threshold, score, self.threshold, tuple(reasons),
                       {n: None if np.isnan(v) else round(float(v), 2) for n, v in zip(NAMES, z)})

    def to_dict(self) -> dict:
        return {"format": OOD_FORMAT, "method": "max one-sided robust z of 5 image statistics vs the val split",
                "split": self.split, "n": self.n, "input_size": self.input_size, "keep": self.keep,
                "threshold": self.threshold, "val_flagged": self.val_flagged,  # full precision: the check is exact
                "features": {f.name: {"median": m, "scale": s, "side": f.side,
                                      "floor": f.floor,
                                      **({"quantiles": self.quantiles[f.name]} if self.quantiles else {})}
                             for f, m, s in zip(FEATURES, self.median, self.scale)},
                "layout_grid": GRID, "layout_template": list(self.template)}


@dataclass(frozen=True)
class Verdict:
    in_distribution: bool
    score: float
    threshold: float
    reasons: tuple[str, ...]
    z: dict

    def to_dict(self) -> dict:
        return {"in_distribution": self.in_distribution, "score": round(self.score, 2),
                "threshold": round(self.threshold, 2), "reasons": list(self.reasons), "z": self.z}


def build_reference(images, split: str = "val", keep: float = KEEP) -> Reference:
    """The reference of a set of in-distribution images (quantize: the val split), given as an array or as
    the Statistics of a streamed pass over them (the same reference)."""
    measured = statistics(images)
    stats, g = measured.arrays()
    template = np.round(_template(g), 4).astype(np.float64)  # stored as is, so a check reproduces the val scores
    feats = _assemble(stats, g, template)
    median, scale = _robust(feats)
    quant = {n: [round(float(v), 4) for v in np.nanquantile(feats[:, j], [0.005, 0.05, 0.5, 0.95, 0.995])]
             if not np.isnan(feats[:, j]).all() else None for j, n in enumerate(NAMES)}
    ref = Reference(tuple(map(float, median)), tuple(map(float, scale)), tuple(map(float, template)),
                    MIN_THRESHOLD, split, measured.n, measured.image_size, keep, 0, quant)
    scores, _ = ref.scores_of(stats, g)
    threshold = conformal_threshold(scores, keep) + TIE    # the kept val images stay kept, rounding aside
    return replace(ref, threshold=threshold, val_flagged=int((scores > threshold).sum()))


def reference_from_dict(doc) -> tuple[Reference | None, str | None]:
    """A sidecar's `ood` value -> (Reference, None), or (None, why there is no guard). Never raises."""
    if doc is None:
        return None, "no `ood` reference (quantized before cxredge had the guard, or a bare model)"
    if not isinstance(doc, dict) or doc.get("format") != OOD_FORMAT:
        fmt = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        return None, f"`ood` reference of an unknown format ({fmt}); this cxredge reads {OOD_FORMAT}"
    try:
        feats = doc["features"]
        ref = Reference(tuple(float(feats[n]["median"]) for n in NAMES), tuple(float(feats[n]["scale"]) for n in NAMES),
                        tuple(float(v) for v in doc["layout_template"]), float(doc["threshold"]), str(doc["split"]),
                        int(doc["n"]), int(doc["input_size"]), float(doc.get("keep", KEEP)),
                        int(doc.get("val_flagged", 0)),
                        {n: feats[n].get("quantiles") for n in NAMES} if all("quantiles" in feats[n] for n in NAMES)
                        else None)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return None, f"`ood` reference is incomplete ({type(exc).__name__}: {exc})"
    if len(ref.template) != GRID * GRID or min(ref.scale) <= 0:
        return None, f"`ood` reference is malformed (layout grid of {len(ref.template)}, scales {ref.scale})"
    return ref, None
