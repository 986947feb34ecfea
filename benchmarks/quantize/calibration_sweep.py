"""int8 PTQ quality vs calibration-set size, side by side in one run.

For one variant of a trained run (default runs/full, two_conv), draw the stratified, seeded calibration
manifest of each size (10, 50, 100, 200, 500 by default), calibrate, quantize (uint8 in, uint8 out)
and evaluate every model on the test split against the Keras float model: top-1 agreement, macro-F1
and its change, max |dprob|, outputs tied at the maximum. Each size is measured twice: the
converter's int8, and the same model bias-corrected on (up to 64 of) the same images, which is what
`cxredge quantize` writes by default. Writes
benchmarks/results/quantize/calibration_sweep.{json,md} with the machine it ran on.

    flock /tmp/cxredge-heavy.lock .venv/bin/python benchmarks/quantize/calibration_sweep.py --run runs/full
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from common import NullTracker, machine_info, results_dir  # noqa: E402, F401 (NullTracker: used by main)

RESULTS = results_dir(__file__)


def setup(run_dir: Path, variant: str, split: str):
    """(run.json, dataset, Keras model, validate.Reference on the split)."""
    from cxredge.convert import validate
    from cxredge.convert.pipeline import load_model, load_run
    from cxredge.edge.data.dataset import load_split, scan_recorded

    run = load_run(run_dir)
    ds = scan_recorded(run["data"])
    model = load_model(run_dir, variant)
    loaded = load_split(ds, split)
    ref = validate.keras_reference(model, loaded.x, loaded.y, run["classes"], split)
    return run, ds, model, ref


def run_bytes(data: bytes, images, threads: int = 1):
    """Write .tflite `data` to a temp file and run it with the edge runtime: (N, C) probabilities."""
    from cxredge.edge.runtime.interpreter import TFLiteModel

    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(data)
        f.flush()
        return TFLiteModel(f.name, threads=threads).predict_all(images)


def evaluate(data: bytes, ref) -> dict:
    """Run `data` with the edge runtime (as `validate.run_tflite` does), compare with the reference."""
    from cxredge.convert import validate

    return {**validate.compare(run_bytes(data, ref.images), ref), "size_bytes": len(data)}


def calibration_images(ds, size: int, seed: int):
    from cxredge.convert import calibration

    manifest = calibration.draw(ds, size, seed)
    return manifest, calibration.load_images(manifest, ds.root, f"size {size}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=Path("runs/full"))
    ap.add_argument("--variant", default="two_conv")
    ap.add_argument("--sizes", default="10,50,100,200,500")
    ap.add_argument("--split", default="test")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--io", default="uint8")
    ap.add_argument("--out", type=Path, default=RESULTS / "calibration_sweep")
    args = ap.parse_args(argv)
    from cxredge.convert import bias_correction, quantize

    sizes = [int(s) for s in args.sizes.split(",")]
    run, ds, model, ref = setup(args.run, args.variant, args.split)
    rows = []
    float32 = quantize.convert_float(model, "float32")
    for size in sizes:
        t0 = time.perf_counter()
        manifest, x = calibration_images(ds, size, args.seed)
        data = quantize.quantize_calibrated(quantize.calibrate(model, x, float_model=float32), args.io,
                                            what=f"n={size}")
        seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        fixed, _ = bias_correction.correct(data, float32, bias_correction.subset(x, bias_correction.DEFAULT_IMAGES))
        bc_seconds = time.perf_counter() - t0
        rec, bc = evaluate(data, ref), evaluate(fixed, ref)
        rows.append({"calibration_size": size, "manifest_sha256": manifest.sha256(),
                     "convert_seconds": round(seconds, 1), **rec,
                     "bias_corrected": {**bc, "seconds": round(bc_seconds, 1)}})
        print(f"n={size:4d}  agreement {100 * rec['agreement']:.2f}% -> {100 * bc['agreement']:.2f}% bias-corrected  "
              f"macro-F1 {100 * rec['delta_macro_f1']:+.2f} -> {100 * bc['delta_macro_f1']:+.2f} pt  "
              f"{seconds:.0f}+{bc_seconds:.0f}s",
              flush=True)
    from cxredge.io import sha256_file

    doc = {"benchmark": "calibration_sweep", "run": str(args.run), "variant": args.variant, "split": args.split,
           "model_sha256": sha256_file(args.run / args.variant / "model.keras"),
           "seed": args.seed, "io": args.io, "float": ref.float_metrics()["macro_f1"], "n": int(len(ref.y)),
           "machine": machine_info(), "results": rows}
    write(args.out, doc, markdown(doc))
    return 0


def markdown(doc: dict) -> str:
    lines = [f"# int8 calibration-set size sweep: {doc['variant']} ({doc['split']} split, n={doc['n']})", "",
             f"Run `{doc['run']}`, stratified seeded train samples (seed {doc['seed']}), uint8 input, "
             f"{doc['io']} output.",
             f"Keras float macro-F1: {doc['float']:.4f}. Machine: {doc['machine']['cpu']} "
             f"({doc['machine']['cores']} cores).", "",
             "PTQ = the converter's int8; + bias corr. = the same model bias-corrected on min(N, 64) of its "
             "calibration images (the `cxredge quantize` default).", "",
             "| calibration images | PTQ agreement | PTQ delta F1 (pt) | + bias corr. agreement | + bias "
             "corr. delta F1 (pt) "
             "| + bias corr. max abs dprob | ties at max | size (MB) | convert (s) | correct (s) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in doc["results"]:
        b = r["bias_corrected"]
        lines.append(f"| {r['calibration_size']} | {100 * r['agreement']:.2f}% | {100 * r['delta_macro_f1']:+.2f} | "
                     f"**{100 * b['agreement']:.2f}%** | {100 * b['delta_macro_f1']:+.2f} | {b['max_abs_dprob']:.3f} | "
                     f"{b['tied_at_max']} | {b['size_bytes'] / 1e6:.2f} | {r['convert_seconds']} | {b['seconds']} |")
    return "\n".join(lines) + "\n"


def write(stem: Path, doc: dict, md: str) -> None:
    from cxredge.io import write_json, write_text

    write_json(stem.with_suffix(".json"), doc)
    write_text(stem.with_suffix(".md"), md)
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")


if __name__ == "__main__":
    sys.exit(main())
