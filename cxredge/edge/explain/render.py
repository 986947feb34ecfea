"""Heatmap overlays and grids as PNG, with Pillow only (no matplotlib), so they render on the device. TF-free.

Overlay: the X-ray in gray, the heatmap over it in a diverging map (red = hiding the patch lowers the
class probability, i.e. evidence for the class; blue = hiding it raises it), opacity growing with |value|
so near-zero saliency leaves the film visible; a dashed line marks the border strip; a colour bar on the
right gives the scale in probability drop (symmetric, +-max |value| of that map); a caption on top.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cxredge.io import atomic_path

# RdBu-like diverging anchors at -1, -0.5, 0, 0.5, 1 (blue -> white -> red).
ANCHORS = np.array([[33, 102, 172], [103, 169, 207], [247, 247, 247], [239, 138, 98], [178, 24, 43]], np.float64)
MAX_ALPHA = 0.7
BAR = 14  # colour bar width, px
GAP = 4


def font(size: int = 11):
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: a scalable default font
    except TypeError:  # older Pillow: the fixed bitmap font
        return ImageFont.load_default()


def colours(v: np.ndarray) -> np.ndarray:
    """Values in [-1, 1] -> (..., 3) float RGB on the diverging map."""
    t = (np.clip(v, -1, 1) + 1) * 2  # 0..4 across the 5 anchors
    i = np.clip(np.floor(t).astype(int), 0, 3)
    f = (t - i)[..., None]
    return ANCHORS[i] * (1 - f) + ANCHORS[i + 1] * f


def scale_of(heatmap: np.ndarray) -> float:
    m = float(np.abs(heatmap).max())
    return m if m > 0 else 1.0


def overlay(image: np.ndarray, heatmap: np.ndarray, vmax: float | None = None,
            border: float | None = None) -> Image.Image:
    """(H, W, 3) uint8 film + (H, W) heatmap -> an RGB image of the same size."""
    gray = image.astype(np.float64).mean(axis=2, keepdims=True).repeat(3, axis=2)
    v = heatmap / (vmax or scale_of(heatmap))
    alpha = (MAX_ALPHA * np.clip(np.abs(v), 0, 1) ** 0.7)[..., None]
    out = Image.fromarray((gray * (1 - alpha) + colours(v) * alpha).round().astype(np.uint8), "RGB")
    if border:
        dashed_rect(ImageDraw.Draw(out), out.size, int(round(border * out.size[0])), int(round(border * out.size[1])))
    return out


def dashed_rect(draw: ImageDraw.ImageDraw, size: tuple[int, int], bx: int, by: int, dash: int = 4) -> None:
    w, h = size
    x0, y0, x1, y1 = bx, by, w - 1 - bx, h - 1 - by
    for x in range(x0, x1, 2 * dash):
        draw.line([(x, y0), (min(x + dash, x1), y0)], fill=(255, 255, 0))
        draw.line([(x, y1), (min(x + dash, x1), y1)], fill=(255, 255, 0))
    for y in range(y0, y1, 2 * dash):
        draw.line([(x0, y), (x0, min(y + dash, y1))], fill=(255, 255, 0))
        draw.line([(x1, y), (x1, min(y + dash, y1))], fill=(255, 255, 0))


def colour_bar(height: int, vmax: float, f, signed: bool = True) -> Image.Image:
    """A vertical bar, +vmax at the top, -vmax (signed) or 0 at the bottom, with three labels."""
    ramp = np.linspace(1, -1 if signed else 0, height)[:, None].repeat(BAR, axis=1)
    bar = Image.fromarray(colours(ramp).round().astype(np.uint8), "RGB")
    labels = [f"{vmax:+.2f}", "0", f"{-vmax:+.2f}"] if signed else [f"{vmax:.2f}", f"{vmax / 2:.2f}", "0"]
    width = BAR + GAP + max(int(f.getlength(s)) for s in labels) + 2
    canvas = Image.new("RGB", (width, height), "white")
    canvas.paste(bar, (0, 0))
    d = ImageDraw.Draw(canvas)
    for y, s in zip((0, height // 2 - 6, height - 12), labels):
        d.text((BAR + GAP, max(0, y)), s, fill="black", font=f)
    return canvas


def figure(image: np.ndarray, heatmap: np.ndarray, caption: list[str], border: float | None,
           vmax: float | None = None) -> Image.Image:
    """Overlay + colour bar (two-sided when the map has negative values) + a caption of one or two lines."""
    f = font(11)
    vmax = vmax or scale_of(heatmap)
    ov = overlay(image, heatmap, vmax, border)
    bar = colour_bar(ov.size[1], vmax, f, signed=bool(heatmap.min() < 0))
    top = 14 * len(caption) + 4
    canvas = Image.new("RGB", (ov.size[0] + GAP + bar.size[0], ov.size[1] + top), "white")
    d = ImageDraw.Draw(canvas)
    for k, line in enumerate(caption):
        d.text((2, 2 + 14 * k), line, fill="black", font=f)
    canvas.paste(ov, (0, top))
    canvas.paste(bar, (ov.size[0] + GAP, top))
    return canvas


def save_png(img: Image.Image, path: Path, width: int | None = None) -> Path:
    """Write atomically; `width` downsizes (keeping the aspect ratio); 256-colour palette keeps files small."""
    if width and img.size[0] > width:
        img = img.resize((width, round(img.size[1] * width / img.size[0])), Image.LANCZOS)
    img = img.quantize(256, method=Image.Quantize.MEDIANCUT)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG", optimize=True)
    return Path(path)


def grid(tiles: list[list[Path | None]], row_labels: list[str], col_labels: list[str],
         tile_width: int = 200) -> Image.Image:
    """Figures (PNG paths) laid out in rows (e.g. one per class) and columns (images x models)."""
    f = font(12)
    opened = [[Image.open(p).convert("RGB") if p else None for p in row] for row in tiles]
    sizes = [im.size for row in opened for im in row if im is not None]
    if not sizes:
        return Image.new("RGB", (10, 10), "white")
    th = max(round(h * tile_width / w) for w, h in sizes)
    left = max([int(f.getlength(s)) for s in row_labels] + [0]) + 8
    head = 18
    cols = max(len(r) for r in opened)
    canvas = Image.new("RGB", (left + cols * (tile_width + GAP), head + len(opened) * (th + GAP)), "white")
    d = ImageDraw.Draw(canvas)
    for j, s in enumerate(col_labels[:cols]):
        d.text((left + j * (tile_width + GAP) + 2, 2), s, fill="black", font=f)
    for i, row in enumerate(opened):
        y = head + i * (th + GAP)
        d.text((2, y + th // 2 - 6), row_labels[i], fill="black", font=f)
        for j, im in enumerate(row):
            if im is not None:
                canvas.paste(im.resize((tile_width, round(im.size[1] * tile_width / im.size[0])), Image.LANCZOS),
                             (left + j * (tile_width + GAP), y))
    return canvas
