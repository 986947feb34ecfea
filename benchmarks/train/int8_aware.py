"""int8-aware training vs plain training, side by side in one run: accuracy and REAL int8 agreement.

    flock /tmp/cxredge-heavy.lock .venv/bin/python benchmarks/train/int8_aware.py \
        --data ../shared/data/chest_xray_4class --consistency 1,4

One process: the feature cache (float and int8 cuts of every train view, val and test) is computed once
with `cxredge train`'s own code; then every variant is trained once plainly (`cxredge train`) and once
per consistency weight with `--int8-aware --int8-consistency W`, same seed, same cache. Each trained
run directory is then quantized by `cxredge quantize`'s own pipeline (PTQ int8, 200 calibration images,
uint8 in / out) and validated on the test split: accuracy of the float model, top-1 agreement of the
int8 model with it, macro-F1 change. Writes benchmarks/results/train/int8_aware.{json,md}.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from common import NullTracker, machine_info, results_dir  # noqa: E402

RESULTS = results_dir(__file__)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("runs/int8_aware_bench"))
    ap.add_argument("--variants", default="fc,one_conv,two_conv")
    ap.add_argument("--consistency", default="1,4", help="comma list of --int8-consistency weights")
    args = ap.parse_args(argv)

    from rich.console import Console

    from cxredge.convert.pipeline import QuantizeSettings, quantize_run
    from cxredge.io import write_json, write_text
    from cxredge.train import fit as fitting
    from cxredge.train import run as train
    from cxredge.train.data import load_data
    from cxredge.train.settings import TrainSettings
    from cxredge.train.variants import resolve_weights

    console = Console()
    variants = tuple(args.variants.split(","))
    base = TrainSettings(variants=variants, int8_aware=True)
    weights = resolve_weights(base.weights, base.alpha)
    fitting.set_determinism(base.seed)
    data = load_data(args.data, seed=base.seed, console=console)
    strategy = fitting.make_strategy(base.strategy)
    t0 = time.perf_counter()
    cuts, feats = train._cache(data, base, weights, console, args.out)  # noqa: SLF001 - the product's own cache
    cache_seconds = time.perf_counter() - t0
    plain_feats = replace(feats, int8_train={}, int8_val={}, int8_test={})
    configs = [("plain", base.replace(int8_aware=False), plain_feats)]
    configs += [(f"int8-aware c={w:g}", base.replace(int8_consistency=w), feats)
                for w in (float(v) for v in args.consistency.split(","))]
    rows = []
    for name, settings, f in configs:
        out = args.out / name.replace(" ", "_").replace("=", "")
        results = [train._train_variant(v, data, f, cuts, settings, weights, strategy, out, console)  # noqa: SLF001
                   for v in variants]
        train._write_run_json(out, data, settings, results, f, strategy, None)  # noqa: SLF001
        qrows = quantize_run(QuantizeSettings(run=out, variants=variants, modes=("float32", "int8"), split="test"),
                             NullTracker())
        for m in results:
            q = next(r for r in qrows if r["variant"] == m["variant"] and r["precision"] == "int8")
            rows.append({"config": name, "variant": m["variant"], "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                         "train_seconds": m["train_seconds"], "epochs": m["epochs_run"],
                         "int8_agreement": q["agreement"], "int8_macro_f1": q["macro_f1"],
                         "int8_macro_f1_delta": q["delta_macro_f1"],
                         "predicted_agreement": m.get("int8_backbone_agreement", {}).get("test")})
            r = rows[-1]
            console.print(f"{name} {r['variant']}: acc {r['accuracy']:.4f} int8 agreement "
                          f"{100 * r['int8_agreement']:.2f}%")
    doc = {"machine": machine_info(), "data": str(args.data), "cache_seconds": round(cache_seconds, 1),
           "int8_calibration": feats.int8_calibration, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / "int8_aware.json", doc)
    write_text(RESULTS / "int8_aware.md", markdown(doc))
    console.print(markdown(doc))


def markdown(doc: dict) -> str:
    lines = ["# int8-aware training vs plain training (`benchmarks/train/int8_aware.py`)", "",
             f"Data: `{doc['data']}`, test split; CPU: {doc['machine']['cpu']} ({doc['machine']['cores']} cores). "
             f"Feature cache with int8 cuts: {doc['cache_seconds']} s. int8 = `cxredge quantize` PTQ, 200 calibration "
             "images (seed 0), uint8 in/out; agreement = top-1 agreement of the int8 .tflite with the Keras model.", "",
             "| training | variant | float accuracy | float macro-F1 | int8 agreement | int8 macro-F1 change | "
             "predicted (float vs int8 cut) | train time |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in doc["rows"]:
        pred = "-" if r["predicted_agreement"] is None else f"{100 * r['predicted_agreement']:.2f}%"
        lines.append(f"| {r['config']} | {r['variant']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | "
                     f"{100 * r['int8_agreement']:.2f}% | {100 * r['int8_macro_f1_delta']:+.2f} pt | {pred} | "
                     f"{r['train_seconds']:.0f} s |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
