"""Inputs that are not chest X-rays, and harder variants of real ones, written as files (Pillow + numpy).

Used by tests/test_ood.py and benchmarks/ood/ood_guard.py, so the guard's tests and its measured rates
cover the same cases: the three of issue 11 (a flat gray PNG, an RGBA colour image, a CMYK JPEG) plus
uniform noise, and X-ray variants (inverted, rotated, heavily JPEG-compressed).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def colour_scene(size: int = 512, seed: int = 0) -> Image.Image:
    """A photo-like RGB scene: colour gradients under random coloured ellipses and rectangles."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    rgb = np.stack([255 * xx, 255 * yy, 255 * (1 - xx) * (1 - yy)], axis=-1).astype(np.uint8)
    im = Image.fromarray(rgb, "RGB")
    draw = ImageDraw.Draw(im)
    for _ in range(12):
        x0, y0 = (int(v) for v in rng.integers(0, size - 60, 2))
        w, h = (int(v) for v in rng.integers(size // 16, size // 2, 2))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x0 + w, y0 + h], fill=fill)
    return im


def flat_png(path: Path, size: int = 6000, value: int = 128) -> Path:
    Image.new("L", (size, size), value).save(path)
    return path


def rgba_scene_png(path: Path, size: int = 512, seed: int = 0) -> Path:
    im = colour_scene(size, seed).convert("RGBA")
    im.putalpha(200)
    im.save(path)
    return path


def cmyk_scene_jpeg(path: Path, size: int = 512, seed: int = 1) -> Path:
    colour_scene(size, seed).convert("CMYK").save(path, "JPEG", quality=90)
    return path


def uniform_noise_png(path: Path, size: int = 224, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), "L").save(path)
    return path


NON_XRAY = {"flat gray PNG": flat_png, "RGBA colour PNG": rgba_scene_png, "CMYK colour JPEG": cmyk_scene_jpeg,
            "uniform noise PNG": uniform_noise_png}


def xray_variants(src: Path, out_dir: Path) -> dict[str, Path]:
    """Harder cases made from one real film: inverted, rotated 90 / 180 degrees, JPEG quality 5 and 20."""
    im = Image.open(src).convert("L")
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = src.stem
    made = {"inverted": (Image.fromarray(255 - np.asarray(im)), "png", {}),
            "rotated 90": (im.rotate(90, expand=True), "png", {}),
            "rotated 180": (im.rotate(180), "png", {}),
            "JPEG quality 5": (im, "jpg", {"quality": 5}),
            "JPEG quality 20": (im, "jpg", {"quality": 20})}
    paths = {}
    for name, (img, ext, kw) in made.items():
        p = out_dir / f"{stem}_{name.replace(' ', '_')}.{ext}"
        img.save(p, **kw)
        paths[name] = p
    return paths
