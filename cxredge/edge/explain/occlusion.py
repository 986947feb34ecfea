"""Occlusion saliency through any classifier: where does the model look? TF-free (numpy only).

Method (Zeiler & Fergus 2014, "Visualizing and understanding convolutional networks"): slide a square
patch of one gray value over the image (`patch` pixels, `stride` apart, the last row/column of patches
flush with the far edge so every pixel is covered), run every occluded copy through the model and
record the drop of the target class's probability (dequantized outputs, so float and int8 models read
alike). `grid[i, j]` is the drop for the patch at row i, column j. The heatmap at image size averages
the drops of every patch that covers a pixel. Positive = the patch held evidence for the class;
negative = hiding it made the model more sure.

Regions: the border strip is the outer `border` fraction of the side on each side (default 0.125, i.e.
28 px of 224; 43.75% of the area); the central region is the rest. `border_share` is the share of the
positive saliency (heatmap clipped at 0) that falls in the border strip. Compare it with
`border_area_share`: a map that ignores position gives about that share.

The model is anything with `predict(batch (N, H, W, 3) uint8) -> (N, C) probabilities`; for a .tflite
that is `BatchRunner`, which runs `batch` occluded copies per invoke when the interpreter accepts a
resized input (checked against batch-1 results) and one per invoke otherwise.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from cxredge.errors import CxrError

DEFAULT_PATCH = 32
DEFAULT_STRIDE = 16
DEFAULT_FILL = 128  # mid-gray: ~0 after the model's [-1, 1] scaling, i.e. "no signal" to the network
DEFAULT_BORDER = 0.125
# for int8 models (benchmarks/results/explain/explain_speed.md: 4-16 alike at 1 thread, 8 fastest at 2)
DEFAULT_BATCH = 8

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class OcclusionSettings:
    patch: int = DEFAULT_PATCH
    stride: int = DEFAULT_STRIDE
    fill: int | str = DEFAULT_FILL  # 0..255, or "mean" (each image's own mean gray value)
    border: float = DEFAULT_BORDER

    def check(self, size: int) -> "OcclusionSettings":
        if not 1 <= self.patch <= size:
            raise CxrError(f"--patch {self.patch}: expected 1..{size} (the model's input side)")
        if not 1 <= self.stride <= self.patch:
            raise CxrError(f"--stride {self.stride}: expected 1..{self.patch} (--patch), so patches cover the image")
        if not (self.fill == "mean" or (isinstance(self.fill, int) and 0 <= self.fill <= 255)):
            raise CxrError(f"--fill {self.fill}: expected 0..255 or 'mean'")
        if not 0.0 < self.border < 0.5:
            raise CxrError(f"--border {self.border}: expected a fraction of the side in (0, 0.5)")
        return self


def parse_fill(value: str) -> int | str:
    if value == "mean":
        return value
    try:
        return int(value)
    except ValueError:
        raise CxrError(f"--fill {value}: expected 0..255 or 'mean'") from None


def positions(size: int, patch: int, stride: int) -> list[int]:
    """Top-left offsets along one side: 0, stride, ... and the last one flush with the far edge."""
    out = list(range(0, size - patch + 1, stride))
    if out[-1] != size - patch:
        out.append(size - patch)
    return out


def fill_value(image: np.ndarray, fill: int | str) -> np.uint8:
    return np.uint8(round(float(image.mean()))) if fill == "mean" else np.uint8(fill)


def occluded(image: np.ndarray, cells: list, patch: int, value: np.uint8) -> np.ndarray:
    """(len(cells), H, W, 3) copies of `image`, each with one patch (top-left at a cell) set to `value`;
    a cell of None leaves its copy untouched."""
    out = np.repeat(image[None], len(cells), axis=0)
    for k, cell in enumerate(cells):
        if cell is not None:
            out[k, cell[0]:cell[0] + patch, cell[1]:cell[1] + patch] = value
    return out


@dataclass(frozen=True)
class Saliency:
    """One image's explanation. grid: (ny, nx) probability drops; heatmap: (H, W) float32."""
    probabilities: np.ndarray
    target: int
    grid: np.ndarray
    heatmap: np.ndarray
    seconds: float
    method: str = "occlusion"


def occlusion(predict: Predict, image: np.ndarray, settings: OcclusionSettings, batch: int = DEFAULT_BATCH,
              target: int | None = None, progress: Callable[[int], None] | None = None) -> Saliency:
    """Occlusion saliency of one (H, W, 3) uint8 image for `target` (default: the predicted class)."""
    t0 = time.perf_counter()
    size = image.shape[0]
    ys = positions(size, settings.patch, settings.stride)
    xs = positions(image.shape[1], settings.patch, settings.stride)
    cells = [(y, x) for y in ys for x in xs]
    value = fill_value(image, settings.fill)
    jobs: list[tuple[int, int] | None] = [None, *cells]  # None: the image itself, in the first batch
    parts = []
    for start in range(0, len(jobs), batch):
        chunk = jobs[start:start + batch]
        parts.append(predict(occluded(image, chunk, settings.patch, value)))
        if progress:
            progress(len(chunk) - (start == 0))
    probs = np.concatenate(parts)
    base = probs[0]
    t = int(base.argmax()) if target is None else target
    drops = (base[t] - probs[1:, t]).astype(np.float32)
    grid = drops.reshape(len(ys), len(xs))
    return Saliency(base, t, grid, spread(grid, ys, xs, settings.patch, image.shape[:2]),
                    time.perf_counter() - t0)


def spread(grid: np.ndarray, ys: list[int], xs: list[int], patch: int, shape: tuple[int, int]) -> np.ndarray:
    """Image-size heatmap: each pixel gets the mean drop of the patches that cover it."""
    total = np.zeros(shape, dtype=np.float64)
    count = np.zeros(shape, dtype=np.float64)
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            total[y:y + patch, x:x + patch] += grid[i, j]
            count[y:y + patch, x:x + patch] += 1
    return (total / np.maximum(count, 1)).astype(np.float32)


# --- regions ----------------------------------------------------------------------------------------

def border_mask(shape: tuple[int, int], border: float) -> np.ndarray:
    """True on the outer `border` fraction of each side (rounded to whole pixels), False in the centre."""
    h, w = shape
    by, bx = int(round(border * h)), int(round(border * w))
    mask = np.ones((h, w), dtype=bool)
    mask[by:h - by, bx:w - bx] = False
    return mask


def region_shares(heatmap: np.ndarray, border: float) -> dict:
    """Share of the positive saliency in the border strip vs the centre, next to the strip's area share."""
    mask = border_mask(heatmap.shape, border)
    pos = np.clip(heatmap.astype(np.float64), 0, None)
    total = float(pos.sum())
    area = float(mask.mean())
    if total <= 0:
        return {"border_share": None, "center_share": None, "border_area_share": area, "border_enrichment": None,
                "positive_total": 0.0}
    share = float(pos[mask].sum() / total)
    return {"border_share": share, "center_share": 1.0 - share, "border_area_share": area,
            "border_enrichment": share / area, "positive_total": total}


# --- comparing two maps -----------------------------------------------------------------------------

def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given their average rank (as scipy.stats.rankdata's 'average')."""
    x = np.asarray(x, dtype=np.float64).ravel()
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation of two equal-size arrays; None when either is constant (undefined)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise CxrError(f"cannot correlate maps of {a.size} and {b.size} cells")
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    if den == 0.0:
        return None
    return float(np.clip((a * b).sum() / den, -1.0, 1.0))


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    return pearson(rankdata(a), rankdata(b))


def block_mean(heatmap: np.ndarray, cells: int) -> np.ndarray:
    """Average an (H, W) map down to (cells, cells) blocks (H and W need not divide evenly)."""
    h, w = heatmap.shape
    ey = np.linspace(0, h, cells + 1).round().astype(int)
    ex = np.linspace(0, w, cells + 1).round().astype(int)
    return np.array([[heatmap[ey[i]:ey[i + 1], ex[j]:ex[j + 1]].mean() for j in range(cells)] for i in range(cells)])


def compare_maps(a: Saliency, b: Saliency) -> dict:
    """Pearson and Spearman of two explanations: on their grids when these match, else on both heatmaps
    averaged to the coarser grid's size."""
    if a.grid.shape == b.grid.shape:
        x, y, on = a.grid, b.grid, f"grid {a.grid.shape[0]}x{a.grid.shape[1]}"
    else:
        n = min(min(a.grid.shape), min(b.grid.shape))
        x, y, on = block_mean(a.heatmap, n), block_mean(b.heatmap, n), f"heatmaps averaged to {n}x{n}"
    return {"pearson": pearson(x, y), "spearman": spearman(x, y), "on": on,
            "same_class": int(a.probabilities.argmax()) == int(b.probabilities.argmax())}


# --- running a .tflite many images per invoke -------------------------------------------------------

class BatchRunner:
    """predict(batch) through a TFLiteModel, `batch` images per invoke when the model can be resized.

    The cxredge models are exported with batch size 1; LiteRT can resize the input to (B, H, W, 3)
    when every op allows it. The resized interpreter is checked against batch-1 outputs on two probe
    images and dropped (batch 1 again) when it fails or disagrees, so a model whose graph hard-codes
    batch 1 is slower, never wrong. `self.batch` is the batch actually used; `self.note` says why not more.
    The runner takes over the model's interpreter (it starts by setting it back to batch 1).
    """

    def __init__(self, model, batch: int = DEFAULT_BATCH):
        self.model = model
        self.it = model.interpreter
        self._in = self.it.get_input_details()[0]["index"]
        self._out = self.it.get_output_details()[0]["index"]
        self.shape = [int(s) for s in model.input_spec["shape"][1:]]
        self.batch, self.note = 1, None
        if int(self.it.get_input_details()[0]["shape"][0]) != 1:
            self._resize(1)
        if batch > 1:
            self.batch = self._try_resize(batch)

    def _resize(self, n: int) -> None:
        self.it.resize_tensor_input(self._in, [n, *self.shape])
        self.it.allocate_tensors()

    def _try_resize(self, batch: int) -> int:
        rng = np.random.default_rng(0)
        probe = rng.integers(0, 256, (2, *self.shape)).astype(np.uint8)
        probe[1] //= 2
        ref = np.concatenate([self._invoke(p[None]) for p in probe])
        try:
            self._resize(batch)
            got = self._invoke(np.resize(probe, (batch, *self.shape)))[:2]
        except (ValueError, RuntimeError) as exc:
            got, self.note = None, f"batch {batch} refused by the runtime ({str(exc).splitlines()[0][:120]})"
        if got is not None and got.shape == ref.shape and np.abs(got - ref).max() <= self._tolerance():
            return batch
        if got is not None:
            self.note = f"batch {batch} gave different outputs from batch 1: one image per invoke"
        self._resize(1)
        return 1

    def _tolerance(self) -> float:
        spec = self.model.output_spec
        return 1e-4 if spec["dtype"].startswith("float") else 1.01 * spec["scale"]

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        from cxredge.edge.runtime.interpreter import dequantize, quantize

        self.it.set_tensor(self._in, quantize(x, self.model.input_spec))
        self.it.invoke()
        out = dequantize(self.it.get_tensor(self._out), self.model.output_spec)
        if out.shape[0] != len(x):
            raise RuntimeError(f"output batch {out.shape[0]} for an input batch of {len(x)}")
        return out

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, C) float32, in chunks of self.batch (the last one padded)."""
        out = []
        for start in range(0, len(images), self.batch):
            chunk = images[start:start + self.batch]
            n = len(chunk)
            if self.batch > 1 and n < self.batch:  # pad: resizing back and forth costs more than the spare slots
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch - n, axis=0)])
            out.append(self._invoke(chunk)[:n])
        return np.concatenate(out) if out else np.empty((0, self.model.num_classes), np.float32)
