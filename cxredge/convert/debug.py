"""Where the int8 error comes from: a per-layer report, and float fallback of the worst layers.

`layer_report` runs TensorFlow Lite's QuantizationDebugger on the calibration images: the debug model
runs every quantized op next to its float twin (NumericVerify) from the same quantized input, so each
row is the error that layer adds by itself. Layers are ranked by rmse/scale (the RMS error in units
of the layer's own quantization step; ~0.29 is pure rounding), as the TFLite debugger guide does.
`--float-fallback K` then re-quantizes the same calibrated model with the K worst layers denylisted
(kept in float, with quantize/dequantize glue around them).
"""
from __future__ import annotations

import csv
import io
import math

import numpy as np

from cxredge import markdown as md
from cxredge.convert.calibration import input_range_anchor
from cxredge.keras import tf

ROUNDING_ONLY = 1 / math.sqrt(12)  # rmse/scale of pure uniform rounding error


def layer_report(calibrated: bytes, x: np.ndarray, progress=None) -> list[dict]:
    """Per-layer error rows, worst first: op, tensor (the denylist name), rmse/scale, mse, max error."""
    from tensorflow.lite.python.convert import mlir_quantize

    debug_model = mlir_quantize(calibrated, False, enable_numeric_verify=True)
    anchor = input_range_anchor(x)
    images = x if anchor is None else np.concatenate([x, anchor[None]])

    def gen():
        for img in images:
            if progress:
                progress(1)
            yield [img[None].astype(np.float32)]

    debugger = tf.lite.experimental.QuantizationDebugger(quant_debug_model_content=debug_model, debug_dataset=gen)
    debugger.run()
    buf = io.StringIO()
    debugger.layer_statistics_dump(buf)
    rows = []
    for r in csv.DictReader(io.StringIO(buf.getvalue())):
        scale = float(r["scale"])
        mse = float(r["mean_squared_error"])
        rows.append({"op": r["op_name"], "tensor": r["tensor_name"], "num_elements": int(float(r["num_elements"])),
                     "rmse_over_scale": math.sqrt(mse) / scale if scale else float("nan"),
                     "mean_squared_error": mse, "max_abs_error": float(r["max_abs_error"]),
                     "mean_error": float(r["mean_error"]), "scale": scale, "zero_point": int(float(r["zero_point"]))})
    rows.sort(key=lambda r: -r["rmse_over_scale"] if r["rmse_over_scale"] == r["rmse_over_scale"] else 0)
    for rank, r in enumerate(rows, 1):
        r["rank"] = rank
    return rows


def worst_layers(rows: list[dict], k: int) -> tuple[str, ...]:
    return tuple(r["tensor"] for r in rows[:k])


def short_name(tensor: str) -> str:
    """'model/conv_pw_13_relu/Relu6;model/conv_pw_13_bn/...' -> 'conv_pw_13_relu/Relu6'."""
    first = tensor.split(";")[0]
    parts = first.split("/")
    return "/".join(parts[1:]) if len(parts) > 1 else first


def report_markdown(variant: str, rows: list[dict], n_images: int, top: int = 10) -> str:
    lines = [f"# int8 per-layer quantization error: {md.text(variant)}", "",
             f"TFLite QuantizationDebugger on {n_images} calibration images. rmse/scale is the RMS error a",
             "layer adds by itself, in units of its quantization step (pure rounding = 0.29).", "",
             "| rank | op | layer | rmse/scale | max abs error | scale |", "|---:|---|---|---:|---:|---:|"]
    for r in rows[:top]:
        name = md.cell(f"`{short_name(r['tensor'])}`", spans=True)  # layer names come from the model file
        lines.append(f"| {r['rank']} | {md.cell(r['op'])} | {name} | {r['rmse_over_scale']:.3f} | "
                     f"{r['max_abs_error']:.4g} | {r['scale']:.4g} |")
    lines += ["", f"{len(rows)} quantized layers in all; full list in the JSON next to this file.", ""]
    return "\n".join(lines)
