"""PTQ vs float fallback vs QAT vs float, for one variant, side by side in one run.

Rows (all evaluated on the test split against the Keras float model, with the edge runtime):
float32 TFLite; int8 PTQ with uint8 and with int8 output (same calibration); int8 with the K worst
layers (QuantizationDebugger, rmse/scale) kept in float, for each K; int8 with the head (conv_preds
and the Dense layers) kept in float, to locate the error; int8 from QAT (tfmot, the
variant's trainable layers only, float-model probabilities as targets). Writes
benchmarks/results/quantize/ptq_vs_qat.{json,md}.

    flock /tmp/cxredge-heavy.lock .venv/bin/python benchmarks/quantize/ptq_vs_qat.py --run runs/full
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from calibration_sweep import RESULTS, calibration_images, evaluate, setup, write  # noqa: E402
from common import machine_info  # noqa: E402

HEAD_NAMES = ("conv_preds", "head_fc1", "head_fc2", "head_out")  # the 1000-d logits conv and the Dense head


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=Path("runs/full"))
    ap.add_argument("--variant", default="two_conv")
    ap.add_argument("--split", default="test")
    ap.add_argument("--calibration-size", type=int, default=200)
    ap.add_argument("--fallback", default="1,2,4,8")
    ap.add_argument("--qat-epochs", type=int, default=2)
    ap.add_argument("--qat-images", type=int, default=400)
    ap.add_argument("--qat-lr", default="1e-4", help="comma list: one QAT row per learning rate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-qat", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS / "ptq_vs_qat")
    args = ap.parse_args(argv)
    from cxredge.convert import bias_correction, debug, quantize
    from cxredge.convert.qat import QatSettings, fine_tune

    run, ds, model, ref = setup(args.run, args.variant, args.split)
    manifest, x = calibration_images(ds, args.calibration_size, args.seed)
    rows = []

    def add(name: str, data: bytes, seconds: float, **info):
        rec = {"model": name, "seconds": round(seconds, 1), **evaluate(data, ref), **info}
        rows.append(rec)
        print(f"{name:28s} agreement {100 * rec['agreement']:.2f}%  macro-F1 {rec['macro_f1']:.4f} "
              f"({100 * rec['delta_macro_f1']:+.2f} pt)  {rec['size_bytes'] / 1e6:.2f} MB  {seconds:.0f}s", flush=True)

    t = time.perf_counter()
    float32 = quantize.convert_float(model, "float32")
    add("float32", float32, time.perf_counter() - t)
    t = time.perf_counter()
    cal = quantize.calibrate(model, x)
    cal_s = time.perf_counter() - t
    ptq = quantize.quantize_calibrated(cal, "uint8")
    add("int8 PTQ (uint8 out)", ptq, cal_s)
    add("int8 PTQ (int8 out)", quantize.quantize_calibrated(cal, "int8"), 0.0)
    t = time.perf_counter()
    corrected, _ = bias_correction.correct(ptq, float32, bias_correction.subset(x, bias_correction.DEFAULT_IMAGES))
    add("int8 PTQ + bias correction (the default)", corrected, time.perf_counter() - t)
    t = time.perf_counter()
    layers = debug.layer_report(cal, x)
    dbg_s = time.perf_counter() - t
    for k in [int(v) for v in args.fallback.split(",") if v]:
        deny = debug.worst_layers(layers, k)
        add(f"int8 + float fallback K={k}", quantize.quantize_calibrated(cal, "uint8", deny, what=f"K={k}"), dbg_s,
            fallback=[debug.short_name(d) for d in deny])
    head = tuple(r["tensor"] for r in layers if any(h in r["tensor"] for h in HEAD_NAMES))
    if head:
        add("int8 + head in float", quantize.quantize_calibrated(cal, "uint8", head, what="head"), dbg_s,
            fallback=[debug.short_name(d) for d in head])
    if not args.skip_qat:
        n = min(args.qat_images, len(ds.splits["train"]))
        _, xq = calibration_images(ds, n, args.seed + 1)
        for lr in [float(v) for v in args.qat_lr.split(",")]:
            settings = QatSettings(epochs=args.qat_epochs, images=n, learning_rate=lr, seed=args.seed)
            t = time.perf_counter()
            qat_model, info = fine_tune(model, xq, settings)
            data = quantize.quantize_calibrated(quantize.calibrate(qat_model, x), "uint8", what="qat")
            add(f"int8 QAT lr={lr:g} (uint8 out)", data, time.perf_counter() - t, qat={**asdict(settings), **info})
    from cxredge.io import sha256_file

    doc = {"benchmark": "ptq_vs_qat", "run": str(args.run), "variant": args.variant, "split": args.split,
           "model_sha256": sha256_file(args.run / args.variant / "model.keras"),
           "n": int(len(ref.y)),
           "calibration": {"size": manifest.size, "seed": manifest.seed, "sha256": manifest.sha256()},
           "float_macro_f1": ref.float_metrics()["macro_f1"], "float_accuracy": ref.float_metrics()["accuracy"],
           "worst_layers": [{"layer": debug.short_name(r["tensor"]), "op": r["op"],
                             "rmse_over_scale": r["rmse_over_scale"]}
                            for r in layers[:10]],
           "machine": machine_info(), "results": rows}
    write(args.out, doc, markdown(doc))
    return 0


def markdown(doc: dict) -> str:
    lines = [f"# PTQ vs float fallback vs QAT vs float: {doc['variant']} ({doc['split']} split, n={doc['n']})", "",
             f"Run `{doc['run']}`. Calibration: {doc['calibration']['size']} stratified train images, seed "
             f"{doc['calibration']['seed']}. Keras float: accuracy {doc['float_accuracy']:.4f}, macro-F1 "
             f"{doc['float_macro_f1']:.4f}. Machine: {doc['machine']['cpu']} ({doc['machine']['cores']} cores).", "",
             "| model | agreement with float | macro-F1 | delta (pt) | max abs dprob | ties at max | size "
             "(MB) | time (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in doc["results"]:
        lines.append(f"| {r['model']} | {100 * r['agreement']:.2f}% | {r['macro_f1']:.4f} | "
                     f"{100 * r['delta_macro_f1']:+.2f} | "
                     f"{r['max_abs_dprob']:.3f} | {r['tied_at_max']} | {r['size_bytes'] / 1e6:.2f} | {r['seconds']} |")
    lines += ["", "Worst int8 layers (QuantizationDebugger, rmse/scale):", ""]
    lines += [f"{i}. `{w['layer']}` ({w['op']}) {w['rmse_over_scale']:.2f}"
              for i, w in enumerate(doc["worst_layers"], 1)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
