"""int8 with nearest vs learned weight rounding, side by side in one run, on val and test.

    nice .venv/bin/python benchmarks/quantize/int8_rounding.py --run runs/int8 --variants two_conv

The run's models are copied (run.json + <variant>/model.keras) into --out/<setting>/, so the run itself is
not touched. Each setting goes through `cxredge quantize`'s own pipeline (200 calibration images, seed 0,
uint8 in / out, bias correction on): `--rounding nearest` (the converter's rounding) and `--rounding
learned` (cxredge/convert/rounding.py). Both int8 files are then run on the val and the test split and
compared with the Keras model's probabilities on the same images: top-1 agreement, macro-F1 change,
mean |dprob|, and McNemar's exact p of int8 vs float correctness (paired, per image). Latency: both int8
files of a variant, 1 thread, invocations interleaved (ABAB...), median ms. The default is chosen on val.
Writes benchmarks/results/quantize/<--result>.{json,md} (default int8_rounding).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from common import NullTracker, copy_run, cpu_summary, machine_info, results_dir, save  # noqa: E402

RESULTS = results_dir(__file__)
SETTINGS = ("nearest", "learned")


def latency(paths: list[Path], image: np.ndarray, rounds: int) -> list[float]:
    """Median ms per invoke of each model, 1 thread, invocations interleaved so drift hits both alike."""
    from ai_edge_litert.interpreter import Interpreter

    its = []
    for p in paths:
        it = Interpreter(model_path=str(p), num_threads=1)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], image[None])
        for _ in range(5):
            it.invoke()
        its.append(it)
    times: list[list[float]] = [[] for _ in its]
    for _ in range(rounds):
        for t, it in zip(times, its):
            t0 = time.perf_counter()
            it.invoke()
            t.append(1e3 * (time.perf_counter() - t0))
    return [statistics.median(t) for t in times]


def evaluate(path: Path, ref) -> dict:
    from cxredge.convert.validate import compare, run_tflite
    from cxredge.edge.evaluate.clinical import mcnemar_exact

    probs = run_tflite(path, ref.images)
    rec = compare(probs, ref)
    test = mcnemar_exact(ref.pred == ref.y, probs.argmax(1) == ref.y)
    return {**rec, "mcnemar_p": test["p"], "only_float_correct": test["only_reference_correct"],
            "only_int8_correct": test["only_model_correct"]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a `cxredge train` run directory")
    ap.add_argument("--out", type=Path, default=Path("runs/int8_rounding_bench"))
    ap.add_argument("--variants", default="two_conv")
    ap.add_argument("--rounding-images", type=int, default=64)
    ap.add_argument("--latency-rounds", type=int, default=200)
    ap.add_argument("--result", default="int8_rounding", help="file stem under benchmarks/results/quantize/")
    args = ap.parse_args(argv)

    from cxredge.convert.pipeline import QuantizeSettings, load_model, load_run, quantize_run
    from cxredge.convert.validate import keras_reference
    from cxredge.edge.data.dataset import load_split, scan_recorded
    from cxredge.io import read_json

    variants = tuple(args.variants.split(","))
    run = load_run(args.run)
    ds = scan_recorded(run["data"])
    splits = {s: load_split(ds, s, skip_bad=True) for s in ("val", "test")}
    rows, seconds = [], {}
    for setting in SETTINGS:
        out = copy_run(args.run, args.out / setting, variants)
        for v in variants:  # one variant at a time: the wall time is the cost per model
            t0 = time.perf_counter()
            quantize_run(QuantizeSettings(run=out, variants=(v,), modes=("float32", "int8"), rounding=setting,
                                          rounding_images=args.rounding_images), NullTracker())
            seconds[f"{setting}/{v}"] = time.perf_counter() - t0
            print(f"{setting} {v}: quantize {seconds[f'{setting}/{v}']:.0f} s", flush=True)
    for v in variants:
        model = load_model(args.run, v)
        refs = {s: keras_reference(model, d.x, d.y, run["classes"], s) for s, d in splits.items()}
        paths = [args.out / s / v / "int8.tflite" for s in SETTINGS]
        ms = latency(paths, splits["val"].x[0], args.latency_rounds)
        for setting, path, t in zip(SETTINGS, paths, ms):
            side = read_json(path.with_suffix(".json"))["conversion"]
            info = side.get("rounding") or {}
            for split, ref in refs.items():
                rows.append({"variant": v, "rounding": setting, "split": split, **evaluate(path, ref),
                             "latency_ms_1thread": t, "latency_ratio_vs_nearest": t / ms[0],
                             "quantize_seconds": seconds[f"{setting}/{v}"],
                             "weights_changed": info.get("weights_changed", 0),
                             "rounding_settings": {k: val for k, val in info.items() if k != "per_layer"} or None})
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    lines = [f"# int8 weight rounding: nearest vs learned ({when})", "",
             f"Run `{args.run}` (data `{run['data']['path']}`, seed {run.get('seed')}); 200 calibration images "
             "(seed 0, train split), uint8 in / out, bias correction on in both. Reference: each variant's Keras "
             "model on the same images. McNemar: exact, int8 vs float correctness. Latency: median of "
             f"{args.latency_rounds} interleaved invokes, 1 thread. CPU: {cpu_summary()}.", "",
             "| variant | rounding | split | agreement | differ | macro-F1 change | mean abs dprob | McNemar p "
             "| ms, 1 thread | x nearest | quantize s |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["variant"], r["split"] != "val", r["rounding"])):
        lines.append(f"| {r['variant']} | {r['rounding']} | {r['split']} | {100 * r['agreement']:.2f}% | "
                     f"{r['disagreements']} | {100 * r['delta_macro_f1']:+.2f} pt | {r['mean_abs_dprob']:.4f} | "
                     f"{r['mcnemar_p']:.3f} | {r['latency_ms_1thread']:.2f} | {r['latency_ratio_vs_nearest']:.3f} | "
                     f"{r['quantize_seconds']:.0f} |")
    val = {(r["variant"], r["rounding"]): r["agreement"] for r in rows if r["split"] == "val"}
    wins = [v for v in variants if val[(v, "learned")] > val[(v, "nearest")]]
    lines += ["", f"Val decides: learned rounding agrees better with float on val for "
              f"{', '.join(wins) if wins else 'no variant'} (of {', '.join(variants)})."]
    save(RESULTS, args.result, {"created": when, "run": str(args.run), "rows": rows, "seconds": seconds,
                                "machine": machine_info()}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
