"""The big DICOM check: a data set's whole test split written as DICOM the way a PACS sends it (MONOCHROME1,
12 bits stored in 16, Rescale Slope 2 / Intercept -4096, a VOI window that maps back to the PNG's values,
JPEG 2000 lossless), benched with a run's models next to the PNG bench of the same images.

    PYTHONPATH=. .venv/bin/python benchmarks/data/dicom_bench_check.py --run RUN [--data DIR]

Needs a trained and quantized run on DIR (default ../shared/data/chest_xray_4class). Writes
benchmarks/results/data/dicom_bench_check.json and .md: per model, the images whose top-1 differs between the
PNG and the DICOM bench, both accuracies, both bench wall times; and how many decoded DICOMs give other
224x224 input pixels than their PNG (0 expected: the window is exact). The CPU is recorded with it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
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


def convert(test: Path, out: Path) -> tuple[int, int, float]:
    """test/<class>/*.png -> out/test/<class>/*.dcm; returns (files, input-pixel mismatches, seconds)."""
    t0 = time.perf_counter()
    n = mismatches = 0
    for png in sorted(test.glob("*/*.png")):
        n += 1
        dest = out / "test" / png.parent.name / f"{png.stem}.dcm"
        dest.parent.mkdir(parents=True, exist_ok=True)
        stored, kw = twelve_bit(np.asarray(Image.open(png).convert("L")))
        write_dicom(dest, stored, syntax="j2k", uid_n=n, **kw)
        mismatches += int(not np.array_equal(load_image(dest), load_image(png)))
    return n, mismatches, time.perf_counter() - t0


def bench(run: Path, out: Path, data: Path | None) -> tuple[dict, float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "cxredge", "bench", "--run", str(run), "--out", str(out), "--ci", "0",
           "--runs", "5", "--warmup", "2"] + (["--data", str(data)] if data else [])
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return json.loads((out / "bench.json").read_text()), time.perf_counter() - t0


def compare(png: dict, dcm: dict) -> dict:
    out = {}
    for key, m in png["models"].items():
        d = dcm["models"].get(key) or {}
        a, b = (m.get("predicted") or "").split(), (d.get("predicted") or "").split()
        if not a or len(a) != len(b):
            out[key] = {"error": f"predictions missing or of other lengths ({len(a)} vs {len(b)})"}
            continue
        differ = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
        out[key] = {"images": len(a), "differ": len(differ), "agreement": round(1 - len(differ) / len(a), 5),
                    "accuracy_png": m.get("accuracy"), "accuracy_dicom": d.get("accuracy"),
                    "delta_accuracy_pt": round(100 * ((d.get("accuracy") or 0) - (m.get("accuracy") or 0)), 3)}
    return out


def markdown(doc: dict) -> str:
    m = doc["machine"]
    lines = ["# The test split as DICOM (MONOCHROME1, 12-bit, rescale + VOI window, JPEG 2000 lossless) vs PNG", "",
             f"CPU: {m.get('cpu_model')}, {m.get('cores')} cores (shared). Run: `{doc['run']}`; {doc['images']} test "
             f"images written as DICOM in {doc['convert_s']:.0f} s; decoded 224x224 inputs differing from the "
             f"PNG's: {doc['input_mismatches']}. Bench wall time: PNG {doc['bench_s']['png']:.0f} s, DICOM "
             f"{doc['bench_s']['dicom']:.0f} s.", "",
             "| model | images | top-1 differs | agreement | accuracy PNG | accuracy DICOM | change (pt) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for key, r in doc["models"].items():
        if "error" in r:
            lines.append(f"| {key} | {r['error']} | | | | | |")
            continue
        lines.append(f"| {key} | {r['images']} | {r['differ']} | {r['agreement']:.2%} | {r['accuracy_png']:.4f} | "
                     f"{r['accuracy_dicom']:.4f} | {r['delta_accuracy_pt']:+.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cxredge-dicom-check-") as tmp:
        tmp = Path(tmp)
        n, mismatches, convert_s = convert(args.data / "test", tmp / "dicom")
        print(f"{n} DICOMs written in {convert_s:.0f} s; {mismatches} decoded inputs differ from the PNG's", flush=True)
        png, png_s = bench(args.run, tmp / "bench_png", None)  # the run's dataset: its test split
        dcm, dcm_s = bench(args.run, tmp / "bench_dicom", tmp / "dicom")
    doc = {"run": str(args.run), "data": str(args.data), "images": n, "input_mismatches": mismatches,
           "convert_s": round(convert_s, 1), "bench_s": {"png": round(png_s, 1), "dicom": round(dcm_s, 1)},
           "dataset": {"png": {k: png["dataset"].get(k) for k in ("source", "split", "n")},
                       "dicom": {k: dcm["dataset"].get(k) for k in ("source", "split", "n")}},
           "models": compare(png, dcm), "machine": device_info()}
    OUT.mkdir(parents=True, exist_ok=True)
    save(OUT, "dicom_bench_check", doc, markdown(doc) + "\n")  # atomic, and printed


if __name__ == "__main__":
    main()
