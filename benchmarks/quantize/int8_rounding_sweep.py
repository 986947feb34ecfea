"""Which learned-rounding settings, if any, beat nearest rounding on the val split (the sweep that chose).

    nice .venv/bin/python benchmarks/quantize/int8_rounding_sweep.py --run runs/int8 --variant two_conv

One process, one calibrated int8 model (200 train images, seed 0, the converter's nearest rounding); each
row re-rounds its weights with convert/rounding.py's `learn` under one setting, then bias-corrects it
(64 images, as `cxredge quantize` does), and compares it on **val** with the Keras model: top-1 agreement
and mean |dprob|. Test is not looked at. Writes benchmarks/results/quantize/<--result>.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from common import cpu_summary, machine_info, results_dir, save  # noqa: E402

RESULTS = results_dir(__file__)
SWEEP = (  # RoundingSettings overrides; the first row is the shipped default of --rounding learned
    {"max_fan_in": 27},
    {"max_fan_in": 27, "target": "float_input"},
    {"max_fan_in": 0, "sweeps": 2},
    {"max_fan_in": 0, "sweeps": 1, "target": "float_input", "damping": 1.0},
)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--variant", default="two_conv")
    ap.add_argument("--result", default="int8_rounding_sweep")
    args = ap.parse_args(argv)

    from cxredge.convert import bias_correction as bc
    from cxredge.convert import calibration, quantize
    from cxredge.convert import rounding as lr
    from cxredge.convert.pipeline import load_model, load_run
    from cxredge.convert.validate import keras_reference, run_tflite
    from cxredge.edge.data.dataset import load_split, scan_recorded

    run = load_run(args.run)
    ds = scan_recorded(run["data"])
    model = load_model(args.run, args.variant)
    manifest = calibration.draw(ds, 200, 0, run["data"].get("sha256") or "unknown")
    cx = calibration.load_images(manifest, ds.root, "--calibration-size 200")
    val = load_split(ds, "val", skip_bad=True)
    ref = keras_reference(model, val.x, val.y, run["classes"], "val")
    f32 = quantize.convert_float(model, "float32")
    int8 = quantize.quantize_calibrated(quantize.calibrate(model, cx, float_model=f32))

    def measure(data: bytes) -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "int8.tflite").write_bytes(data)
            probs = run_tflite(Path(tmp) / "int8.tflite", ref.images)
        return {"agreement": float((probs.argmax(1) == ref.pred).mean()),
                "disagreements": int((probs.argmax(1) != ref.pred).sum()),
                "mean_abs_dprob": float(np.abs(probs - ref.probs).mean())}

    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = [{"setting": "nearest (today's default)", "seconds": 0.0,
             **measure(bc.correct(int8, f32, bc.subset(cx, bc.DEFAULT_IMAGES))[0])}]
    for over in SWEEP:
        settings = lr.RoundingSettings(**over)
        t0 = time.perf_counter()
        data, info = lr.learn(int8, f32, cx, settings)
        seconds = time.perf_counter() - t0
        rows.append({"setting": json.dumps(over), "seconds": seconds, "layers_rounded": info["layers_rounded"],
                     "weights_changed": info["weights_changed"],
                     **measure(bc.correct(data, f32, bc.subset(cx, bc.DEFAULT_IMAGES))[0])})
        print(rows[-1], flush=True)
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    lines = [f"# Learned rounding settings on val ({when})", "",
             f"Run `{args.run}`, variant {args.variant}, val split ({len(ref.y)} images); 200 calibration images "
             f"(seed 0), then bias correction (64 images) in every row. CPU: {cpu_summary()}.", "",
             "| rounding setting (RoundingSettings overrides) | layers re-rounded | weights changed | val agreement "
             "| differ | mean abs dprob | rounding s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| `{r['setting']}` | {r.get('layers_rounded', 0)} | {r.get('weights_changed', 0)} | "
                     f"{100 * r['agreement']:.2f}% | {r['disagreements']} | {r['mean_abs_dprob']:.4f} | "
                     f"{r['seconds']:.0f} |")
    save(RESULTS, args.result, {"created": when, "run": str(args.run), "variant": args.variant, "split": "val",
                                "rows": rows, "machine": machine_info()}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
