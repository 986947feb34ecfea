"""Where the int8 error comes from: weights vs activations, layer by layer, before and after bias correction.

    nice .venv/bin/python benchmarks/quantize/int8_error_sources.py --run runs/full --variant two_conv

One variant, its 200-image calibration set (seed 0, train split), the val split (never test: this chose
the method). Every row is compared with the float32 model's probabilities on the same val images:
images whose top-1 class differs, agreement, mean |dprob|.
- `int8 ...`: real LiteRT int8 files (exact input, --no-equalize unless named), before / after bias correction.
- `weights only ...`: float32.tflite with every conv / dense kernel rounded per output channel as the int8
  converter does (symmetric, max|w| / 127); activations stay float. `+ BC` takes each layer's mean error
  on 64 calibration images out of its float bias, layer by layer (the float twin of bias correction).
- `activations only ...`: the Keras model run layer by layer with each ReLU6 output (and the pooled
  features) rounded to the uint8 grid of [0, 6] (the range every ReLU6 tensor of these models gets);
  weights float, no bias correction. `alone` rounds one layer only; `equalized steps` gives each channel
  of the first three ReLU6 layers the finer step that channel equalization (convert/equalize.py) gives it.
Writes benchmarks/results/quantize/int8_error_sources.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from common import cpu_summary, machine_info, results_dir, save  # noqa: E402

RESULTS = results_dir(__file__)
KERNEL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
STEP = 6.0 / 255.0


def run_tflite(data: bytes, x: np.ndarray) -> np.ndarray:
    from cxredge.convert.bias_correction import interpreter

    it = interpreter(data)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    res = []
    for img in x:
        it.set_tensor(inp["index"], img[None].astype(inp["dtype"]))
        it.invoke()
        o = it.get_tensor(out["index"])[0].astype(np.float64)
        s, z = out["quantization"]
        res.append((o - z) * s if s else o)
    return np.array(res)


def kernel_layers(model) -> list[dict]:
    from tensorflow.lite.python import schema_py_generated as schema

    names = {v: k for k, v in schema.BuiltinOperator.__dict__.items() if not k.startswith("_")}
    out = []
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        kind = names.get(max(code.builtinCode, code.deprecatedBuiltinCode))
        if kind in KERNEL_OPS:
            out.append({"kind": kind, "w": int(op.inputs[1]), "b": int(op.inputs[2]), "out": int(op.outputs[0])})
    return out


def _get(model, t: int) -> np.ndarray:
    tensor = model.subgraphs[0].tensors[t]
    return np.frombuffer(bytes(model.buffers[tensor.buffer].data), np.float32).reshape(tensor.shape).copy()


def _set(model, t: int, value: np.ndarray) -> None:
    model.buffers[model.subgraphs[0].tensors[t].buffer].data = np.frombuffer(value.astype(np.float32).tobytes(),
                                                                              np.uint8)


def weights_rounded(float32: bytes) -> bytes:
    """float32.tflite with every kernel rounded per output channel to int8's grid."""
    from tensorflow.lite.tools import flatbuffer_utils

    m = flatbuffer_utils.read_model_from_bytearray(bytearray(float32))
    for la in kernel_layers(m):
        w = _get(m, la["w"])
        axis = 3 if la["kind"] == "DEPTHWISE_CONV_2D" else 0
        keep = tuple(i for i in range(w.ndim) if i != axis)
        s = np.abs(w).max(axis=keep, keepdims=True) / 127
        s[s == 0] = 1
        _set(m, la["w"], np.clip(np.round(w / s), -127, 127) * s)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(m))


def float_bias_correction(rounded: bytes, float32: bytes, x: np.ndarray) -> bytes:
    """Each kernel layer's mean output error (vs float32, upstream layers already corrected) out of its bias."""
    from tensorflow.lite.tools import flatbuffer_utils

    from cxredge.convert.bias_correction import channel_means, interpreter

    m = flatbuffer_utils.read_model_from_bytearray(bytearray(rounded))
    layers = kernel_layers(m)
    target = channel_means(interpreter(float32, keep_all=True), x, [la["out"] for la in layers])
    for la, want in zip(layers, target):
        it = interpreter(bytes(flatbuffer_utils.convert_object_to_bytearray(m)), keep_all=True)
        _set(m, la["b"], _get(m, la["b"]) - (channel_means(it, x, [la["out"]])[0] - want))
    return bytes(flatbuffer_utils.convert_object_to_bytearray(m))


def activations_rounded(model, x: np.ndarray, rounded: dict[str, np.ndarray]) -> np.ndarray:
    """The Keras chain run layer by layer, the named outputs rounded to [0, 6]'s uint8 grid (per-channel
    step divided by the given scale)."""
    import tensorflow as tf

    layers = model.layers[1:]

    @tf.function
    def f(batch):
        for la in layers:
            batch = la(batch, training=False)
            if la.name in rounded:
                step = STEP / rounded[la.name]
                batch = tf.round(tf.clip_by_value(batch, 0.0, 6.0) / step) * step
        return batch

    return np.concatenate([f(tf.constant(x[i:i + 56].astype(np.float32))).numpy()
                           for i in range(0, len(x), 56)]).astype(np.float64)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--variant", default="two_conv")
    ap.add_argument("--alone", type=int, default=6, help="first N ReLU6 layers measured alone")
    args = ap.parse_args(argv)

    from cxredge.convert import bias_correction as bcorr
    from cxredge.convert import calibration, quantize
    from cxredge.convert.equalize import EqualizeSettings, channel_maxima, equalize, find_pairs, is_chain, scales_for
    from cxredge.convert.pipeline import load_model, load_run
    from cxredge.edge.data.dataset import load_split, scan_recorded

    run = load_run(args.run)
    ds = scan_recorded(run["data"])
    xc = calibration.load_images(calibration.draw(ds, 200, 0), ds.root, "calibration")
    x64 = bcorr.subset(xc, bcorr.DEFAULT_IMAGES)
    xv = load_split(ds, "val", skip_bad=True).x
    model = load_model(args.run, args.variant)
    f32 = quantize.convert_float(model, "float32")
    pf = run_tflite(f32, xv.astype(np.float32))
    rows = []

    def row(source: str, p: np.ndarray, seconds: float) -> None:
        differ = int((p.argmax(1) != pf.argmax(1)).sum())
        rows.append({"source": source, "differ": differ, "agreement": round(100 * (1 - differ / len(pf)), 2),
                     "mean_abs_dprob": round(float(np.abs(p - pf).mean()), 5), "seconds": round(seconds, 1)})
        print(json.dumps(rows[-1]), flush=True)

    def int8_rows(name: str, m, twin: bytes) -> None:
        t0 = time.perf_counter()
        q = quantize.quantize_calibrated(quantize.calibrate(m, xc, float_model=twin))
        row(f"int8, {name}", run_tflite(q, xv), time.perf_counter() - t0)
        t0 = time.perf_counter()
        row(f"int8, {name} + BC", run_tflite(bcorr.correct(q, twin, x64)[0], xv), time.perf_counter() - t0)

    int8_rows("nearest", model, f32)
    eq_model, _ = equalize(model, xc, EqualizeSettings())
    int8_rows("equalized", eq_model, quantize.convert_float(eq_model, "float32"))
    t0 = time.perf_counter()
    rounded = weights_rounded(f32)
    row("weights only", run_tflite(rounded, xv.astype(np.float32)), time.perf_counter() - t0)
    t0 = time.perf_counter()
    row("weights only + BC", run_tflite(float_bias_correction(rounded, f32, x64), xv.astype(np.float32)),
        time.perf_counter() - t0)

    relus = [la.name for la in model.layers if la.name.endswith("_relu")]
    pooled = [la.name for la in model.layers if "global_average_pooling" in la.name]
    if is_chain(model):
        ones = {n: np.float32(1.0) for n in relus + pooled}
        pairs = find_pairs(model)[:EqualizeSettings().pairs]
        maxima = channel_maxima(model, [p.relu for p in pairs], xc)
        finer = {p.relu: scales_for(maxima[p.relu], EqualizeSettings()) for p in pairs}
        for name, spec in [("activations only, every ReLU6 + pooled", ones),
                           ("activations only, equalized steps", {**ones, **finer})] + \
                          [(f"activations only, {n} alone", {n: np.float32(1.0)}) for n in relus[:args.alone]] + \
                          [(f"activations only, {n} alone, equalized step", {n: finer[n]}) for n in finer]:
            t0 = time.perf_counter()
            row(name, activations_rounded(model, xv, spec), time.perf_counter() - t0)

    doc = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "run": str(args.run),
           "variant": args.variant, "split": "val", "images": len(pf), "calibration": "200, seed 0, train",
           "machine": machine_info(), "rows": rows}
    lines = [f"# int8 error sources: {args.variant} ({doc['created']})", "",
             f"Run `{args.run}`, val split ({len(pf)} images), 200 calibration images (seed 0, train split); "
             f"every row against the float32 model on the same images. CPU: {cpu_summary()}. "
             "Script: `benchmarks/quantize/int8_error_sources.py` (its docstring defines each row).", "",
             "| error source | images that differ | agreement | mean abs dprob |", "|---|---:|---:|---:|"]
    lines += [f"| {r['source']} | {r['differ']} | {r['agreement']:.2f}% | {r['mean_abs_dprob']:.4f} |" for r in rows]
    save(RESULTS, "int8_error_sources", doc, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
