"""int8 methods side by side in one run, on val and test: the first of --methods is the baseline.

    nice .venv/bin/python benchmarks/quantize/int8_methods.py --run runs/full --variants fc,one_conv,two_conv \
        --methods exact_input,equalized --result int8_equalized
    nice .venv/bin/python benchmarks/quantize/int8_methods.py --run runs/int8 --methods nearest,learned \
        --result int8_rounding

The run's models are copied (run.json + <variant>/model.keras) into --out/<method>/, so the run itself is
not touched. Each method is a set of `cxredge quantize` settings (METHODS) and goes through its own
pipeline (200 calibration images, seed 0, uint8 in / out, bias correction on): `calibrated_input` vs
`exact_input` (convert/exact_input.py), `exact_input` vs `equalized` (convert/equalize.py), or `nearest`
vs `learned` weight rounding (convert/rounding.py; both measured before exact input existed, so both keep
the calibrator's input range). Every method but `equalized` is run with --no-equalize. Every int8 file is
run on the val and the test split and compared with the Keras model's probabilities on the same images:
top-1 agreement, macro-F1 change, mean |dprob|, and McNemar's exact p of int8 vs float correctness
(paired, per image). Latency: every int8 file of a variant, 1 thread, invocations interleaved (ABAB...),
median ms. The default is chosen on val. Writes benchmarks/results/quantize/<--result>.{json,md}.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from common import NullTracker, copy_run, cpu_summary, machine_info, results_dir, save  # noqa: E402

RESULTS = results_dir(__file__)
METHODS = {  # QuantizeSettings overrides (equalize: EqualizeSettings fields, or None for --no-equalize)
    "calibrated_input": {"exact_input": False, "equalize": None},
    "exact_input": {"exact_input": True, "equalize": None},
    "equalized": {"exact_input": True, "equalize": {"pairs": 3, "margin": 1.0, "max_scale": 16.0}},
    "equalized_learned": {"exact_input": True, "equalize": {"pairs": 3, "margin": 1.0, "max_scale": 16.0},
                          "rounding": "learned"},
    "nearest": {"rounding": "nearest", "exact_input": False, "equalize": None},
    "learned": {"rounding": "learned", "exact_input": False, "equalize": None},
}


def overrides(method: str) -> dict:
    from cxredge.convert.equalize import EqualizeSettings

    o = dict(METHODS[method])
    o["equalize"] = EqualizeSettings(**o["equalize"]) if o.get("equalize") else None
    return o


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
    ap.add_argument("--out", type=Path, default=Path("runs/int8_methods_bench"))
    ap.add_argument("--variants", default="two_conv")
    ap.add_argument("--methods", default="calibrated_input,exact_input", help=f"of {', '.join(METHODS)}")
    ap.add_argument("--rounding-images", type=int, default=64)
    ap.add_argument("--latency-rounds", type=int, default=200)
    ap.add_argument("--result", default="int8_exact_input", help="file stem under benchmarks/results/quantize/")
    ap.add_argument("--latency-only", action="store_true",
                    help="time the int8 files already under --out again and update --result's rows")
    args = ap.parse_args(argv)
    if args.latency_only:
        return remeasure_latency(args)
    methods = tuple(args.methods.split(","))
    unknown = [m for m in methods if m not in METHODS]
    if unknown or len(methods) < 2:
        ap.error(f"--methods {args.methods}: two or more of {', '.join(METHODS)}")

    from cxredge.convert.pipeline import QuantizeSettings, load_model, load_run, quantize_run
    from cxredge.convert.validate import keras_reference
    from cxredge.edge.data.dataset import load_split, scan_recorded
    from cxredge.io import read_json

    variants = tuple(args.variants.split(","))
    run = load_run(args.run)
    ds = scan_recorded(run["data"])
    splits = {s: load_split(ds, s, skip_bad=True) for s in ("val", "test")}
    rows, seconds = [], {}
    for setting in methods:
        out = copy_run(args.run, args.out / setting, variants)
        for v in variants:  # one variant at a time: the wall time is the cost per model
            t0 = time.perf_counter()
            quantize_run(QuantizeSettings(run=out, variants=(v,), modes=("float32", "int8"),
                                          rounding_images=args.rounding_images, **overrides(setting)), NullTracker())
            seconds[f"{setting}/{v}"] = time.perf_counter() - t0
            print(f"{setting} {v}: quantize {seconds[f'{setting}/{v}']:.0f} s", flush=True)
    for v in variants:
        model = load_model(args.run, v)
        refs = {s: keras_reference(model, d.x, d.y, run["classes"], s) for s, d in splits.items()}
        paths = [args.out / s / v / "int8.tflite" for s in methods]
        ms = latency(paths, splits["val"].x[0], args.latency_rounds)
        for setting, path, t in zip(methods, paths, ms):
            side = read_json(path.with_suffix(".json"))["conversion"]
            info = side.get("rounding") or {}
            for split, ref in refs.items():
                rows.append({"variant": v, "method": setting, "settings": METHODS[setting], "split": split,
                             **evaluate(path, ref), "latency_ms_1thread": t, "latency_ratio_vs_baseline": t / ms[0],
                             "quantize_seconds": seconds[f"{setting}/{v}"],
                             "weights_changed": info.get("weights_changed", 0),
                             "rounding_settings": {k: val for k, val in info.items() if k != "per_layer"} or None})
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    doc = {"created": when, "run": str(args.run), "data": run["data"]["path"], "seed": run.get("seed"),
           "methods": methods, "variants": variants, "latency_rounds": args.latency_rounds, "rows": rows,
           "seconds": seconds, "machine": machine_info(), "cpu": cpu_summary()}
    save(RESULTS, args.result, doc, render(doc))


def remeasure_latency(args) -> None:
    """--latency-only: the int8 files already in --out, timed again (a quieter machine), rows updated."""
    from cxredge.io import read_json

    doc = read_json(RESULTS / f"{args.result}.json")
    run = read_json(args.run / "run.json")  # a result written before these keys were recorded
    doc.setdefault("variants", list(dict.fromkeys(r["variant"] for r in doc["rows"])))
    doc.setdefault("data", run["data"]["path"])
    doc.setdefault("seed", run.get("seed"))
    doc.setdefault("cpu", cpu_summary())
    image = np.full((224, 224, 3), 128, np.uint8)
    image[::7] = 30
    for v in doc["variants"]:
        paths = [args.out / m / v / "int8.tflite" for m in doc["methods"]]
        ms = latency(paths, image, args.latency_rounds)
        for r in doc["rows"]:
            if r["variant"] == v:
                t = ms[doc["methods"].index(r["method"])]
                r.update(latency_ms_1thread=t, latency_ratio_vs_baseline=t / ms[0])
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    doc.update(latency_remeasured=when, latency_rounds=args.latency_rounds, latency_machine=machine_info(),
               latency_cpu=cpu_summary(), latency_loadavg=[round(x, 2) for x in os.getloadavg()])
    save(RESULTS, args.result, doc, render(doc))


def render(doc: dict) -> str:
    methods, variants, rows = tuple(doc["methods"]), doc["variants"], doc["rows"]
    timed = (f"re-measured {doc['latency_remeasured']} on {doc['latency_cpu']}, load average "
             f"{doc['latency_loadavg']} at the start" if doc.get("latency_remeasured") else "in the same run")
    lines = [f"# int8: {' vs '.join(methods)} ({doc['created']})", "",
             f"Run `{doc['run']}` (data `{doc['data']}`, seed {doc['seed']}); 200 calibration images "
             "(seed 0, train split), uint8 in / out, bias correction on in both. Reference: each variant's Keras "
             "model on the same images. McNemar: exact, int8 vs float correctness. Latency: median of "
             f"{doc['latency_rounds']} interleaved invokes, 1 thread, {timed}. CPU: {doc['cpu']}.", "",
             f"| variant | method | split | agreement | differ | macro-F1 change | mean abs dprob | McNemar p "
             f"| ms, 1 thread | x {methods[0]} | quantize s |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["variant"], r["split"] != "val", methods.index(r["method"]))):
        lines.append(f"| {r['variant']} | {r['method']} | {r['split']} | {100 * r['agreement']:.2f}% | "
                     f"{r['disagreements']} | {100 * r['delta_macro_f1']:+.2f} pt | {r['mean_abs_dprob']:.4f} | "
                     f"{r['mcnemar_p']:.3f} | {r['latency_ms_1thread']:.2f} | {r['latency_ratio_vs_baseline']:.3f} | "
                     f"{r['quantize_seconds']:.0f} |")
    val = {(r["variant"], r["method"]): r for r in rows if r["split"] == "val"}
    for m in methods[1:]:
        wins = [v for v in variants if val[(v, m)]["agreement"] > val[(v, methods[0])]["agreement"]]
        ties = [v for v in variants if val[(v, m)]["agreement"] == val[(v, methods[0])]["agreement"]]
        closer = [v for v in variants if val[(v, m)]["mean_abs_dprob"] < val[(v, methods[0])]["mean_abs_dprob"]]
        lines += ["", f"Val decides: {m} agrees better with float than {methods[0]} on val for "
                  f"{', '.join(wins) or 'no variant'}, ties for {', '.join(ties) or 'none'} "
                  f"(of {', '.join(variants)}); its mean |dprob| is lower for {', '.join(closer) or 'none'}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
