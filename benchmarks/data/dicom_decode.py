"""How fast cxredge decodes DICOM against PNG: images/s of `load_image` (decode + the grayscale pipeline +
the 224x224 resize, what every verb runs per image), measured side by side in one run on this CPU.

    PYTHONPATH=. .venv/bin/python benchmarks/data/dicom_decode.py [--data DIR] [--n 200] [--n-large 8]

Two sizes, from real chest X-rays of the data set's test split (default ../shared/data/chest_xray_4class):
- 224x224 as the data set ships: PNG (8-bit, as is) vs DICOM 12-bit MONOCHROME1 with rescale and window,
  stored uncompressed, RLE, JPEG Lossless (process 14 SV1) and JPEG 2000 lossless;
- 2048x2048 (the same films upscaled bicubic: a hospital film's size): 16-bit PNG vs the same DICOMs.
The DICOMs are written with tests/dicom_fixtures.py (the test fixtures' writer). Results:
benchmarks/results/data/dicom_decode.json and .md, with the machine (lscpu model, cores).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))
from common import results_dir, save  # noqa: E402
from dicom_fixtures import twelve_bit, write_dicom  # noqa: E402

from cxredge.edge.data.images import load_image  # noqa: E402
from cxredge.edge.runtime.device import device_info  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "chest_xray_4class"
OUT = results_dir(__file__)
SYNTAXES = ("explicit", "rle", "jpegll", "j2k")
NAMES = {"png": "PNG", "explicit": "DICOM uncompressed", "rle": "DICOM RLE Lossless",
         "jpegll": "DICOM JPEG Lossless (SV1)", "j2k": "DICOM JPEG 2000 lossless"}


def pick(data: Path, n: int) -> list[Path]:
    classes = sorted(d for d in (data / "test").iterdir() if d.is_dir())
    per = [sorted(d.glob("*.png")) for d in classes]
    out, i = [], 0
    while len(out) < n:
        for files in per:
            if i < len(files) and len(out) < n:
                out.append(files[i])
        i += 1
    return out


def write_set(src: list[Path], folder: Path, size: int | None) -> dict[str, list[Path]]:
    """PNG + the four DICOM encodings of each source image (at `size`, else as is)."""
    sets = {k: [] for k in ("png", *SYNTAXES)}
    for i, p in enumerate(src):
        gray = Image.open(p).convert("L")
        if size:
            gray = gray.resize((size, size), Image.BICUBIC)
        g = np.asarray(gray)
        stored, kw = twelve_bit(g)
        png = folder / f"{i}.png"
        if size:  # a 16-bit PNG, as a hospital export to PNG would be
            Image.fromarray((4095 - stored).astype(np.uint16)).save(png)
        else:
            gray.save(png)
        sets["png"].append(png)
        for syntax in SYNTAXES:
            sets[syntax].append(write_dicom(folder / f"{i}_{syntax}.dcm", stored, syntax=syntax, uid_n=i + 1, **kw))
    return sets


def rate(files: list[Path], repeats: int) -> dict:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for f in files:
            load_image(f)
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {"images": len(files), "seconds": [round(t, 3) for t in times], "images_per_s": round(len(files) / best, 1),
            "ms_per_image": round(1000 * best / len(files), 2), "mean_file_kb": round(
                statistics.mean(f.stat().st_size for f in files) / 1024, 1)}


def measure(sets: dict[str, list[Path]], repeats: int) -> dict:
    for files in sets.values():  # warm the page cache and imports once
        load_image(files[0])
    rows = {k: rate(files, repeats) for k, files in sets.items()}
    png = rows["png"]["images_per_s"]
    for r in rows.values():
        r["vs_png"] = round(r["images_per_s"] / png, 3)
    return rows


def markdown(doc: dict) -> str:
    m = doc["machine"]
    lines = ["# DICOM vs PNG decode speed (`load_image`: decode + grayscale pipeline + 224x224 resize)", "",
             f"CPU: {m.get('cpu_model')}, {m.get('cores')} cores (shared); {doc['command']}. Best of "
             f"{doc['repeats']} passes; ratio = images/s over PNG's, measured in the same run.", ""]
    for size, rows in doc["sizes"].items():
        lines += [f"## {size}", "", "| format | images | images/s | ms/image | x PNG | file KB |",
                  "|---|---:|---:|---:|---:|---:|"]
        for k, r in rows.items():
            lines.append(f"| {NAMES[k]} | {r['images']} | {r['images_per_s']} | {r['ms_per_image']} | "
                         f"{r['vs_png']:.2f} | {r['mean_file_kb']} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--n", type=int, default=200, help="224x224 images per format")
    ap.add_argument("--n-large", type=int, default=8, help="2048x2048 images per format")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if not (args.data / "test").is_dir():
        raise SystemExit(f"--data {args.data}: no test/ folder")
    doc = {"command": f"benchmarks/data/dicom_decode.py --n {args.n} --n-large {args.n_large}", "repeats": args.repeats,
           "machine": device_info(), "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="cxredge-dicom-bench-") as tmp:
        for label, n, size in (("224x224 (the data set)", args.n, None), ("2048x2048 (film size)", args.n_large, 2048)):
            folder = Path(tmp) / str(size)
            folder.mkdir()
            sets = write_set(pick(args.data, n), folder, size)
            doc["sizes"][label] = measure(sets, args.repeats)
            print(label, json.dumps({k: v["images_per_s"] for k, v in doc["sizes"][label].items()}), flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    save(OUT, "dicom_decode", doc, markdown(doc) + "\n")  # atomic, and printed


if __name__ == "__main__":
    main()
