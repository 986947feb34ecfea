"""Why int8 agreement stays near 95%: how fragile the float models are, and where the int8 error grows.

    flock /tmp/cxredge-heavy.lock .venv/bin/python benchmarks/quantize/int8_gap.py --run runs/full \
        [--runs-extra runs/full_noise2]

For every variant of each run (side by side, one process, the run's own test split):
1. Fragility of the float model: top-1 agreement of the Keras model with itself when Gaussian pixel
   noise of 0.5 / 1 / 2 gray levels (of 255) is added to the test images. A model that flips its
   answer under noise below one gray level cannot be expected to keep it under int8 rounding.
2. The int8 model (`int8.tflite` of the run): top-1 agreement with the Keras model on the same images.
3. Where the int8 error grows: relative RMS error ||int8 - float|| / ||float|| of every op's output
   (dequantized int8 vs float32.tflite, plain kernels, the first --layer-images test images), and the
   share of each tensor that sits at the top of its int8 range.
Writes benchmarks/results/quantize/int8_gap.json and .md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from cxredge.edge.data.dataset import load_split, scan_recorded
from cxredge.edge.runtime.interpreter import TFLiteModel
from cxredge.io import read_json, write_json, write_text
from cxredge.keras import keras
from cxredge.train.cache import predict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from common import results_dir  # noqa: E402

RESULTS = results_dir(__file__)
NOISE = (0.5, 1.0, 2.0)
SKIP_OPS = {"QUANTIZE", "DEQUANTIZE", "DELEGATE"}


def fragility(model, x: np.ndarray, seed: int) -> tuple[dict[str, float], np.ndarray]:
    clean = predict(model, x.astype(np.float32)).argmax(1)
    rng = np.random.default_rng(seed)
    out = {}
    for sd in NOISE:
        noisy = np.clip(x + rng.normal(0.0, sd, x.shape), 0, 255).astype(np.float32)
        out[f"noise_sd_{sd}"] = float((predict(model, noisy).argmax(1) == clean).mean())
    return out, clean


def layer_errors(float_path: Path, int8_path: Path, x: np.ndarray) -> list[dict]:
    """Per-op relative RMS error of the int8 model against float32.tflite (same graph, same order)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    def load(p):
        it = Interpreter(model_path=str(p), experimental_preserve_all_tensors=True,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        it.allocate_tensors()
        details = {t["index"]: t for t in it.get_tensor_details()}
        ops = [(o["op_name"], details[o["outputs"][0]]) for o in it._get_ops_details()  # noqa: SLF001
               if o["op_name"] not in SKIP_OPS]
        return it, ops

    (fi, fops), (qi, qops) = load(float_path), load(int8_path)
    if [n for n, _ in fops] != [n for n, _ in qops]:
        raise SystemExit(f"{int8_path}: op sequence differs from {float_path}")
    err, ref, top = np.zeros(len(fops)), np.zeros(len(fops)), np.zeros(len(fops))
    for img in x:
        for it in (fi, qi):
            d = it.get_input_details()[0]
            it.set_tensor(d["index"], img[None].astype(d["dtype"]))
            it.invoke()
        for k, ((_, a), (_, b)) in enumerate(zip(fops, qops)):
            fa = fi.get_tensor(a["index"]).astype(np.float64)
            raw = qi.get_tensor(b["index"]).astype(np.float64)
            scale, zp = b["quantization"]
            qa = (raw - zp) * scale if scale else raw
            err[k] += ((fa - qa) ** 2).sum()
            ref[k] += (fa ** 2).sum()
            top[k] += float((raw >= np.iinfo(b["dtype"]).max).mean()) / len(x) if scale else 0.0
    return [{"op": n, "tensor": a["name"].split(";")[0], "rel_rms_error": float(np.sqrt(e / max(r, 1e-30))),
             "int8_scale": float(b["quantization"][0]), "share_at_top": float(t)}
            for (n, a), (_, b), e, r, t in zip(fops, qops, err, ref, top)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, nargs="+", default=[Path("runs/full")])
    ap.add_argument("--layer-images", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    t0 = time.time()
    rows, layers = [], {}
    for run in a.run:
        info = read_json(run / "run.json")
        ds = scan_recorded(info["data"])
        test = load_split(ds, "test")
        for vdir in sorted(p.parent for p in run.glob("*/int8.tflite")):
            model = keras.models.load_model(vdir / "model.keras", compile=False)
            frag, clean = fragility(model, test.x, a.seed)
            int8 = TFLiteModel(vdir / "int8.tflite").predict_proba(test.x).argmax(1)
            rows.append({"run": str(run), "variant": vdir.name, "n": len(test.x),
                         "float_accuracy": float((clean == test.y).mean()),
                         "int8_agreement": float((int8 == clean).mean()), **frag})
            pick = test.x[:: max(1, len(test.x) // a.layer_images)][: a.layer_images]
            layers[f"{run.name}/{vdir.name}"] = layer_errors(vdir / "float32.tflite", vdir / "int8.tflite", pick)
            print(rows[-1], flush=True)
    lines = [f"# Why int8 agreement stays near 95% ({time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())})", "",
             "Test split of each run's dataset. Agreement = top-1 agreement with the same variant's Keras model "
             "on clean images.", "",
             "| run | variant | float acc | int8 agreement | float agreement, pixel noise sd 0.5 | sd 1 | sd 2 |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {Path(r['run']).name} | {r['variant']} | {r['float_accuracy']:.3f} | "
                     f"{r['int8_agreement'] * 100:.2f}% | {r['noise_sd_0.5'] * 100:.2f}% | "
                     f"{r['noise_sd_1.0'] * 100:.2f}% | {r['noise_sd_2.0'] * 100:.2f}% |")
    for key, rows_l in layers.items():
        lines += ["", f"## int8 error by layer: {key} ({a.layer_images} test images)", "",
                  "| # | op | tensor | rel. RMS error | int8 step | share at int8 max |",
                  "|---:|---|---|---:|---:|---:|"]
        lines += [f"| {i} | {r['op']} | `{r['tensor']}` | {r['rel_rms_error']:.3f} | {r['int8_scale']:.4f} | "
                  f"{r['share_at_top'] * 100:.2f}% |" for i, r in enumerate(rows_l)]
    lines += ["", f"Whole script: {time.time() - t0:.0f} s."]
    text = "\n".join(lines) + "\n"
    print(text)
    write_json(RESULTS / "int8_gap.json", {"rows": rows, "layers": layers})
    write_text(RESULTS / "int8_gap.md", text)


if __name__ == "__main__":
    main()
