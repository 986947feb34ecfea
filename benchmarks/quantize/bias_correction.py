"""int8 PTQ with and without bias correction, side by side in one run, on a trained run directory.

    flock /tmp/cxredge-heavy.lock .venv/bin/python benchmarks/quantize/bias_correction.py \
        --run runs/full --fallback-variant two_conv --fallback 20

The run's models are copied (run.json + <variant>/model.keras) into --out/<setting>/, so the run
itself is not touched. Each setting goes through `cxredge quantize`'s own pipeline (200 calibration
images, seed 0, uint8 in / out) and is validated on the test split: top-1 agreement with the Keras
model, macro-F1 change, max |dprob|. Settings: PTQ int8 as the converter makes it, the same int8
bias-corrected (the default), and optionally bias correction plus --float-fallback K for one variant.
Writes benchmarks/results/<--result>.{json,md} (default bias_correction).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from common import NullTracker, copy_run, machine_info, results_dir  # noqa: E402

RESULTS = results_dir(__file__)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a `cxredge train` run directory")
    ap.add_argument("--out", type=Path, default=Path("runs/bias_correction_bench"))
    ap.add_argument("--variants", default="fc,one_conv,two_conv")
    ap.add_argument("--split", default="test")
    ap.add_argument("--fallback-variant", default=None)
    ap.add_argument("--fallback", type=int, default=0)
    ap.add_argument("--result", default="bias_correction", help="file stem under benchmarks/results/quantize/")
    args = ap.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from cxredge.convert.pipeline import QuantizeSettings, quantize_run
    from cxredge.io import read_json, write_json, write_text

    console = Console()
    variants = tuple(args.variants.split(","))
    settings = [("ptq", variants, False, 0), ("ptq + bias correction", variants, True, 0)]
    if args.fallback_variant and args.fallback:
        settings.append((f"ptq + bias correction + float fallback {args.fallback}", (args.fallback_variant,),
                         True, args.fallback))
    rows, timings = [], {}
    for name, vs, bias, fallback in settings:
        out = copy_run(args.run, args.out / name.replace(" ", "_").replace("+", "and"), vs)
        t0 = time.perf_counter()
        got = quantize_run(QuantizeSettings(run=out, variants=vs, modes=("float32", "int8"), split=args.split,
                                            bias_correction=bias, float_fallback=fallback), NullTracker())
        timings[name] = time.perf_counter() - t0
        for r in got:
            if r["precision"] == "float32":
                continue
            side = read_json(Path(r["model"]).with_suffix(".json"))
            rows.append({"setting": name, "variant": r["variant"], "precision": r["precision"],
                         "agreement": r["agreement"], "macro_f1": r["macro_f1"],
                         "delta_macro_f1": r["delta_macro_f1"], "max_abs_dprob": r["max_abs_dprob"],
                         "size_bytes": r["size_bytes"], "tied_at_max": r["tied_at_max"],
                         "bias_correction": side["conversion"].get("bias_correction")})
        console.print(f"{name}: {timings[name]:.0f} s")

    run = read_json(args.run / "run.json")
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    n = rows and read_json(Path(args.out) / "ptq" / variants[0] / "int8.json")["validation"]["n"]
    table = Table(title=f"int8 vs the Keras model, {args.split} split ({n} images)")
    for col in ("setting", "variant", "model", "agreement", "macro-F1 change", "max |dprob|", "MB"):
        table.add_column(col)
    lines = [f"# Bias correction of PTQ int8 ({when})", "",
             f"Run `{args.run}` (data `{run['data']['path']}`, seed {run.get('seed')}), {args.split} split, "
             f"{n} images; 200 calibration images (seed 0) from the train split, uint8 in / out. "
             "Agreement = top-1 agreement with the same variant's Keras model. One process, same models.", "",
             "| setting | variant | model | agreement | macro-F1 change | max abs dprob | size MB |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        cells = [r["setting"], r["variant"], r["precision"], f"{100 * r['agreement']:.2f}%",
                 f"{100 * r['delta_macro_f1']:+.2f} pt", f"{r['max_abs_dprob']:.3f}", f"{r['size_bytes'] / 1e6:.2f}"]
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    base = {r["variant"]: r["agreement"] for r in rows if r["setting"] == "ptq"}
    lines += ["", "Disagreements, without -> with bias correction: " + ", ".join(
        f"{r['variant']} {round((1 - base[r['variant']]) * n)} -> {round((1 - r['agreement']) * n)}"
        for r in rows if r["setting"] == "ptq + bias correction"), "",
        "Whole `cxredge quantize` per setting (convert, calibrate, correct, validate): "
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + ".", "", f"Machine: {machine_info()}."]
    console.print(table)
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / f"{args.result}.json", {"created": when, "run": str(args.run), "split": args.split,
                                                  "n": n, "rows": rows, "seconds": timings,
                                                  "machine": machine_info()})
    write_text(RESULTS / f"{args.result}.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
