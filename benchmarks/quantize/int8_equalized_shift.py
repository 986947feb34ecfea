"""Does channel equalization hold on images brighter or harsher than the calibration set?

    nice .venv/bin/python benchmarks/quantize/int8_equalized_shift.py --run runs/full \
        --bench runs/eqbench --variants fc,one_conv,two_conv

Equalization maps each quiet channel's calibration maximum to 6 (convert/equalize.py); an image that
drives such a channel past its calibration maximum is clipped in the int8 copy. This takes the int8 files
that `int8_methods.py --methods exact_input,equalized --out BENCH` wrote, shifts the val images (contrast
x1.15 and x1.3 around mid-gray, +20 gray levels, gamma 0.8; clipped to 0-255), and compares each int8
model with its Keras model on the same shifted images: images whose top-1 class differs, mean |dprob|.
Writes benchmarks/results/quantize/int8_equalized_shift.{json,md}.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from common import cpu_summary, machine_info, results_dir, save  # noqa: E402

RESULTS = results_dir(__file__)
SHIFTS = {
    "as is": lambda x: x.astype(np.float32),
    "contrast x1.15": lambda x: (x.astype(np.float32) - 128) * 1.15 + 128,
    "contrast x1.3": lambda x: (x.astype(np.float32) - 128) * 1.3 + 128,
    "+20 gray levels": lambda x: x.astype(np.float32) + 20,
    "gamma 0.8": lambda x: 255 * (x.astype(np.float32) / 255.0) ** 0.8,
}
METHODS = ("exact_input", "equalized")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="the run the int8 files were made from")
    ap.add_argument("--bench", type=Path, required=True, help="int8_methods.py's --out (exact_input/, equalized/)")
    ap.add_argument("--variants", default="two_conv")
    args = ap.parse_args(argv)

    from cxredge.convert.pipeline import load_model, load_run
    from cxredge.convert.validate import run_tflite
    from cxredge.edge.data.dataset import load_split, scan_recorded

    ds = scan_recorded(load_run(args.run)["data"])
    xv = load_split(ds, "val", skip_bad=True).x
    rows = []
    for v in args.variants.split(","):
        model = load_model(args.run, v)
        files = {m: args.bench / m / v / "int8.tflite" for m in METHODS}
        for shift, fn in SHIFTS.items():
            x = np.clip(np.rint(fn(xv)), 0, 255).astype(np.uint8)
            ref = model.predict(x.astype(np.float32), batch_size=56, verbose=0).astype(np.float64)
            row = {"variant": v, "shift": shift}
            for m in METHODS:
                p = run_tflite(files[m], x)
                row[m] = {"differ": int((p.argmax(1) != ref.argmax(1)).sum()),
                          "mean_abs_dprob": round(float(np.abs(p - ref).mean()), 5)}
            rows.append(row)
            print(row, flush=True)
    doc = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "run": str(args.run),
           "bench": str(args.bench), "split": "val", "images": len(xv), "machine": machine_info(), "rows": rows}
    lines = [f"# Channel equalization on shifted images ({doc['created']})", "",
             f"Run `{args.run}`, val split ({len(xv)} images) shifted as named, int8 files from `{args.bench}` "
             "(200 calibration images of the unshifted train split, seed 0; exact input and bias correction on "
             f"in both). Each int8 model against its Keras model on the same shifted images. CPU: {cpu_summary()}.",
             "", "| variant | images | differ: plain / equalized | mean abs dprob: plain / equalized |",
             "|---|---|---:|---:|"]
    for r in rows:
        a, b = r["exact_input"], r["equalized"]
        lines.append(f"| {r['variant']} | {r['shift']} | {a['differ']} / {b['differ']} | "
                     f"{a['mean_abs_dprob']:.4f} / {b['mean_abs_dprob']:.4f} |")
    save(RESULTS, "int8_equalized_shift", doc, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
