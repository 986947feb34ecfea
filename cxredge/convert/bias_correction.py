"""Empirical bias correction of a full-integer model: the int8 layers' mean error, taken out of their biases.

Why: rounding weights and activations to int8 does not only add noise, it shifts each output channel's
mean (Nagel et al. 2019, "Data-Free Quantization Through Weight Equalization and Bias Correction",
section 4.2). In a frozen MobileNet the shifts add up layer after layer: on chest_xray_4class the
conv_preds logits of the fc variant end up biased, and a head that reads them sees another input.

How: run the float32 model once over the calibration images and keep every biased layer's per-channel
output mean. Then, layer by layer in execution order, run the int8 model cut just after that layer (so
the upstream corrections already apply), take its per-channel mean (dequantized), and subtract the
difference from the layer's int32 bias (in the bias's own scale, per channel). Only int32 bias values
change: weights, scales, zero points and the graph stay as the converter made them, so the model is
still full-integer and its I/O is unchanged. The same images give the same bytes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from cxredge.errors import CxrError

BIASED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


@dataclass(frozen=True)
class _Layer:
    op: int          # operator index (execution order)
    output: int      # output tensor index
    bias: int        # bias tensor index
    name: str        # the output tensor's first name


def _interpreter(data: bytes, keep_all: bool = False):
    """keep_all: every tensor readable after invoke (plain kernels, one thread: the float reference).
    Otherwise the default kernels on every core: integer results do not depend on how work is split."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    if keep_all:
        kwargs = {"experimental_preserve_all_tensors": True, "num_threads": 1,
                  "experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    else:
        kwargs = {"num_threads": os.cpu_count() or 1}
    it = Interpreter(model_content=data, **kwargs)
    it.allocate_tensors()
    return it


def _layers(it, want_int32_bias: bool) -> list[_Layer]:
    details = {d["index"]: d for d in it.get_tensor_details()}
    out = []
    for op in it._get_ops_details():  # noqa: SLF001 - the only op-level view LiteRT gives
        if op["op_name"] not in BIASED_OPS or len(op["inputs"]) < 3 or op["inputs"][2] < 0:
            continue
        bias = details[int(op["inputs"][2])]
        if want_int32_bias and np.dtype(bias["dtype"]) != np.int32:
            continue  # a layer kept in float (--float-fallback): nothing to correct
        out.append(_Layer(int(op["index"]), int(op["outputs"][0]), int(bias["index"]),
                          details[int(op["outputs"][0])]["name"].split(";")[0]))
    return out


def count_layers(int8: bytes) -> int:
    """How many layers `correct` will touch (int32-biased CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED)."""
    return len(_layers(_interpreter(int8), want_int32_bias=True))


def _run(it, images: np.ndarray, tensors: list[int]) -> list[np.ndarray]:
    """Per-channel means of `tensors` (dequantized) over all images and positions."""
    details = {d["index"]: d for d in it.get_tensor_details()}
    inp = it.get_input_details()[0]
    sums = [np.zeros(int(details[t]["shape"][-1])) for t in tensors]
    for img in images:
        it.set_tensor(inp["index"], img[None].astype(inp["dtype"]))
        it.invoke()
        for s, t in zip(sums, tensors):
            raw = it.get_tensor(t).astype(np.float64)
            s += raw.reshape(-1, raw.shape[-1]).mean(0)
    means = []
    for s, t in zip(sums, tensors):
        scale, zero_point = details[t]["quantization"]
        m = s / len(images)
        means.append((m - zero_point) * scale if scale else m)
    return means


def _cut_after(model, layer: _Layer) -> bytes:
    """The model's bytes with every op after `layer` dropped and its output as the only output."""
    from tensorflow.lite.tools import flatbuffer_utils

    sub = model.subgraphs[0]
    ops, outputs = sub.operators, sub.outputs
    sub.operators, sub.outputs = ops[:layer.op + 1], np.array([layer.output], dtype=np.int32)
    try:
        return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    finally:
        sub.operators, sub.outputs = ops, outputs


def correct(int8: bytes, float32: bytes, images: np.ndarray,
            progress: Callable[[int], None] | None = None) -> tuple[bytes, dict]:
    """The int8 model with bias-corrected layers, and a record of what was done.

    `float32`: the same network as float32.tflite (the reference the corrections aim at).
    `images`: uint8 (N, 224, 224, 3) calibration images (never val/test).
    """
    from tensorflow.lite.tools import flatbuffer_utils

    if not len(images):
        raise CxrError("bias correction: no calibration images")
    q_layers = _layers(_interpreter(int8), want_int32_bias=True)
    f_by_name = {la.name: la for la in _layers(_interpreter(float32, keep_all=True), want_int32_bias=False)}
    missing = [la.name for la in q_layers if la.name not in f_by_name]
    if missing:
        raise CxrError(f"bias correction: the float model has no layer {missing[0]!r}; not the same network")
    f_means = _run(_interpreter(float32, keep_all=True), images, [f_by_name[la.name].output for la in q_layers])

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(int8))
    tensors, buffers = model.subgraphs[0].tensors, model.buffers
    shifts = []
    for la, f_mean in zip(q_layers, f_means):
        q_mean = _run(_interpreter(_cut_after(model, la)), images, [la.output])[0]  # a cut keeps its tensor indices
        err = q_mean - f_mean
        bias_t = tensors[la.bias]
        scale = np.asarray(bias_t.quantization.scale, dtype=np.float64)
        buf = buffers[bias_t.buffer]
        bias = np.frombuffer(bytes(bytearray(buf.data)), dtype=np.int32).astype(np.int64)
        fixed = np.clip(bias - np.rint(err / scale).astype(np.int64), -2**31, 2**31 - 1).astype(np.int32)
        buf.data = np.frombuffer(fixed.tobytes(), dtype=np.uint8)
        shifts.append(float(np.abs(err).mean()))
        if progress:
            progress(1)
    data = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    return data, {"images": int(len(images)), "layers": len(q_layers),
                  "mean_abs_shift_first": shifts[0] if shifts else 0.0,
                  "mean_abs_shift_max": max(shifts, default=0.0),
                  "worst_layer": q_layers[int(np.argmax(shifts))].name if shifts else None}


__all__ = ["correct", "count_layers"]
