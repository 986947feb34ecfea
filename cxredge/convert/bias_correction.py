"""Empirical bias correction of a full-integer model: the int8 layers' mean error, taken out of their biases.

Why: rounding weights and activations to int8 does not only add noise, it shifts each output channel's
mean (Nagel et al. 2019, "Data-Free Quantization Through Weight Equalization and Bias Correction",
section 4.2). In a frozen MobileNet the shifts add up layer after layer: on chest_xray_4class the
conv_preds logits of the fc variant end up biased, and a head that reads them sees another input.

How: run the float32 model once over the calibration images and keep every biased layer's per-channel
output mean. Then, layer by layer in execution order, run the int8 graph up to that layer (so the
upstream corrections already apply), take its per-channel mean (dequantized), and subtract the
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
DEFAULT_IMAGES = 64  # of the calibration set, evenly spaced: as good as all 200 on chest_xray_4class, 3x faster


def subset(images: np.ndarray, n: int) -> np.ndarray:
    """`n` images evenly spaced over the calibration set (its manifest is sorted by class folder, so
    the subset keeps the classes' shares); all of them when there are no more than `n`."""
    if n >= len(images):
        return images
    return images[np.linspace(0, len(images) - 1, n).round().astype(int)]


@dataclass(frozen=True)
class _Layer:
    op: int          # operator index (execution order)
    output: int      # output tensor index
    bias: int        # bias tensor index
    name: str        # the output tensor's first name


def interpreter(data: bytes, keep_all: bool = False):
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
    return len(_layers(interpreter(int8), want_int32_bias=True))


def channel_means(it, images: np.ndarray, tensors: list[int]) -> list[np.ndarray]:
    """Per-channel means of `tensors` (dequantized) over all images and positions."""
    details = {d["index"]: d for d in it.get_tensor_details()}
    inp = it.get_input_details()[0]
    sums = [np.zeros(int(details[t]["shape"][-1])) for t in tensors]
    for img in images:
        it.set_tensor(inp["index"], img[None].astype(inp["dtype"]))
        it.invoke()
        for s, t in zip(sums, tensors):
            raw = it.get_tensor(t)
            s += raw.reshape(-1, raw.shape[-1]).mean(0, dtype=np.float64)
    means = []
    for s, t in zip(sums, tensors):
        scale, zero_point = details[t]["quantization"]
        m = s / len(images)
        means.append((m - zero_point) * scale if scale else m)
    return means


class Replay:
    """Replays the int8 graph a few ops at a time on stored intermediate tensors.

    Each biased op runs twice over the images (to measure it, then with its corrected bias at the start
    of the next segment), so correcting L layers costs ~2 passes of the network, not the L/2 passes
    that re-running every prefix would. Sub-graphs keep the model's tensor indices, so stored values feed them directly.
    """

    def __init__(self, model, images: np.ndarray):
        self.model, self.sub = model, model.subgraphs[0]
        self.values: dict[int, np.ndarray] = {int(self.sub.inputs[0]): images}
        self.done = 0  # ops [0, done) have been replayed

    def _constant(self, t: int) -> bool:
        data = self.model.buffers[self.sub.tensors[t].buffer].data
        return data is not None and len(data) > 0

    def run(self, upto: int) -> np.ndarray:
        """Replay ops [done, upto]; return op `upto`'s output for every image (as stored: int8 / uint8)."""
        from tensorflow.lite.tools import flatbuffer_utils

        ops = self.sub.operators[self.done:upto + 1]
        produced = {int(t) for op in ops for t in op.outputs}
        inputs = sorted({int(t) for op in ops for t in op.inputs
                         if t >= 0 and int(t) not in produced and not self._constant(int(t))})
        needed = {int(t) for op in self.sub.operators[upto:] for t in op.inputs} | {int(t) for t in self.sub.outputs}
        last = int(self.sub.operators[upto].outputs[0])
        outputs = sorted((produced & needed) | {last})
        used = {self.sub.tensors[t].buffer for op in ops for t in op.inputs if t >= 0}
        dropped = [(b, b.data) for i, b in enumerate(self.model.buffers) if i not in used and b.data is not None]
        saved = self.sub.operators, self.sub.inputs, self.sub.outputs, self.model.signatureDefs
        self.sub.operators, self.model.signatureDefs = ops, []
        self.sub.inputs, self.sub.outputs = np.array(inputs, np.int32), np.array(outputs, np.int32)
        for b, _ in dropped:  # other layers' weights: not serialized for this segment
            b.data = None
        try:
            it = interpreter(bytes(flatbuffer_utils.convert_object_to_bytearray(self.model)))
        finally:
            self.sub.operators, self.sub.inputs, self.sub.outputs, self.model.signatureDefs = saved
            for b, data in dropped:
                b.data = data
        n = len(self.values[inputs[0]])
        dtypes = {d["index"]: d["dtype"] for d in it.get_input_details()}
        fresh = {t: None for t in outputs}
        for i in range(n):
            for t in inputs:
                it.set_tensor(t, self.values[t][i][None].astype(dtypes[t], copy=False))
            it.invoke()
            for t in outputs:
                v = it.get_tensor(t)[0]
                if fresh[t] is None:
                    fresh[t] = np.empty((n,) + v.shape, v.dtype)
                fresh[t][i] = v
        self.values.update(fresh)
        self.done = upto + 1
        for t in [t for t in self.values if t not in needed]:
            del self.values[t]
        return self.values[last]

    def mean(self, values: np.ndarray, tensor: int) -> np.ndarray:
        """Per-channel mean, dequantized."""
        q = self.sub.tensors[tensor].quantization
        m = values.reshape(-1, values.shape[-1]).mean(0, dtype=np.float64)
        return (m - float(q.zeroPoint[0])) * float(q.scale[0])


def correct(int8: bytes, float32: bytes, images: np.ndarray,
            progress: Callable[[int], None] | None = None) -> tuple[bytes, dict]:
    """The int8 model with bias-corrected layers, and a record of what was done.

    `float32`: the same network as float32.tflite (the reference the corrections aim at).
    `images`: uint8 (N, 224, 224, 3) calibration images (never val/test).
    """
    from tensorflow.lite.tools import flatbuffer_utils

    if not len(images):
        raise CxrError("bias correction: no calibration images")
    q_layers = _layers(interpreter(int8), want_int32_bias=True)
    f_it = interpreter(float32, keep_all=True)
    f_by_name = {la.name: la for la in _layers(f_it, want_int32_bias=False)}
    missing = [la.name for la in q_layers if la.name not in f_by_name]
    if missing:
        raise CxrError(f"bias correction: the float model has no layer {missing[0]!r}; not the same network")
    f_means = channel_means(f_it, images, [f_by_name[la.name].output for la in q_layers])

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(int8))
    tensors, buffers = model.subgraphs[0].tensors, model.buffers
    replay = Replay(model, images)
    shifts = []
    for la, f_mean in zip(q_layers, f_means):
        err = replay.mean(replay.run(la.op), la.output) - f_mean
        bias_t = tensors[la.bias]
        scale = np.asarray(bias_t.quantization.scale, dtype=np.float64)
        buf = buffers[bias_t.buffer]
        bias = np.frombuffer(bytes(bytearray(buf.data)), dtype=np.int32).astype(np.int64)
        fixed = np.clip(bias - np.rint(err / scale).astype(np.int64), -2**31, 2**31 - 1).astype(np.int32)
        buf.data = np.frombuffer(fixed.tobytes(), dtype=np.uint8)
        replay.done = la.op  # the next run starts again at this layer, with its corrected bias
        shifts.append(float(np.abs(err).mean()))
        if progress:
            progress(1)
    data = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    worst = int(np.argmax(shifts)) if shifts else None
    # the largest mean |per-channel shift| taken out, in the layer's output units
    return data, {"images": int(len(images)), "layers": len(q_layers),
                  "largest_shift": None if worst is None else {"layer": q_layers[worst].name,
                                                               "mean_abs": round(shifts[worst], 6)}}


__all__ = ["DEFAULT_IMAGES", "channel_means", "correct", "count_layers", "subset"]
