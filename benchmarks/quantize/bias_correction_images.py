"""How many calibration images bias correction needs: int8 agreement on val and test for N images.

    flock /tmp/cxredge-heavy.lock .venv/bin/python benchmarks/quantize/bias_correction_images.py \
        --run runs/bias_correction_bench/ptq --images 32,64,200

Reads each variant's float32.tflite and (uncorrected) int8.tflite from a run quantized with
`cxredge quantize --no-bias-correction` (benchmarks/quantize/bias_correction.py leaves one under
runs/bias_correction_bench/ptq), corrects the int8 model with N images evenly spaced over the run's
calibration manifest (what `--bias-correction-images N` does), and measures top-1 agreement with
float32.tflite (equal to the Keras model to 1e-4) on the val and test splits, and the seconds the
correction took. Writes benchmarks/results/quantize/bias_correction_images.{json,md}.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from calibration_sweep import run_bytes  # noqa: E402
from common import machine_info, results_dir  # noqa: E402

RESULTS = results_dir(__file__)


def classes(data: bytes, x):
    return run_bytes(data, x, threads=2).argmax(1)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--variants", default="fc,one_conv,two_conv")
    ap.add_argument("--images", default="32,64,200")
    args = ap.parse_args(argv)

    from cxredge.convert import bias_correction, calibration
    from cxredge.convert.pipeline import load_run
    from cxredge.edge.data.dataset import load_split, scan_recorded
    from cxredge.io import read_json, write_json, write_text

    run = load_run(args.run)
    ds = scan_recorded(run["data"])
    manifest_path = args.run / read_json(args.run
                                         / args.variants.split(",")[0] / "int8.json")["calibration"]["manifest"]
    cal = calibration.load_images(calibration.read_manifest(manifest_path), ds.root, manifest_path)
    splits = {s: load_split(ds, s).x for s in ("val", "test")}
    rows = []
    for variant in args.variants.split(","):
        f32 = (args.run / variant / "float32.tflite").read_bytes()
        int8 = (args.run / variant / "int8.tflite").read_bytes()
        ref = {s: classes(f32, x) for s, x in splits.items()}
        plain = {s: float((classes(int8, x) == ref[s]).mean()) for s, x in splits.items()}
        rows.append({"variant": variant, "images": 0, **plain, "seconds": 0.0})
        for n in map(int, args.images.split(",")):
            t0 = time.perf_counter()
            fixed, _ = bias_correction.correct(int8, f32, bias_correction.subset(cal, n))
            sec = time.perf_counter() - t0
            got = {s: float((classes(fixed, x) == ref[s]).mean()) for s, x in splits.items()}
            rows.append({"variant": variant, "images": n, **got, "seconds": sec})
            print(rows[-1], flush=True)
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    lines = [f"# Bias correction: calibration images needed ({when})", "",
             f"Run `{args.run}` (data `{run['data']['path']}`); manifest `{manifest_path.name}`. Agreement = top-1 "
             f"agreement of int8 with float32.tflite; val {len(splits['val'])} and test {len(splits['test'])} images. "
             "0 images = the converter's int8, uncorrected. Seconds: the correction alone, one process.", "",
             "| variant | images | val agreement | test agreement | seconds |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['variant']} | {r['images'] or 'none'} | {100 * r['val']:.2f}% | {100 * r['test']:.2f}% | "
              f"{r['seconds']:.1f} |" for r in rows]
    lines += ["", f"Machine: {machine_info()}."]
    write_json(RESULTS / "bias_correction_images.json", {"created": when, "run": str(args.run), "rows": rows,
                                                         "machine": machine_info()})
    write_text(RESULTS / "bias_correction_images.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
