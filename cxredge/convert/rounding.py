"""Learned rounding of int8 weights: per layer, pick each weight's up/down rounding against the float layer.

Why: the converter rounds every weight to the nearest step of its channel's scale (max|w| / 127). Each
weight's rounding error is small, but a layer's output error is what the next layer sees, and the
nearest rounding is not the rounding that minimises it (Nagel et al., "Up or Down? Adaptive Rounding for
Post-Training Quantization", ICML 2020).

How (a greedy, closed-form variant of AdaRound's objective, AdaQuant-style local search): layer by layer
in execution order, take the layer's input as the int8 graph computes it (upstream layers already
re-rounded) and as the float32 graph computes it, on the calibration images. For each output channel,
with X_q / X_f the im2col rows of those inputs (centered: bias correction takes the mean out afterwards),
minimise ||X_q (s q) - X_f w||^2 over integer q in {floor(w/s), ceil(w/s)} by coordinate descent from
the nearest rounding (exact quadratic updates through the Gram matrices X_q'X_q and X_q'X_f). A channel
keeps the nearest rounding unless the search lowered its error. Only int8 weight bytes change: scales,
zero points, biases, the graph and its op set stay the converter's, so the model is still full-integer
with the same I/O and speed. Layers whose calibration rows are too few for their fan-in (the head's
Dense layers see one row per image) keep the nearest rounding: fitting them would fit the images.
Deterministic: the same images give the same bytes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from cxredge.convert.bias_correction import BIASED_OPS, Replay, interpreter, subset
from cxredge.errors import CxrError

MODES = ("nearest", "learned")
DEFAULT_IMAGES = 64


@dataclass(frozen=True)
class RoundingSettings:
    images: int = DEFAULT_IMAGES   # calibration images (evenly spaced over the manifest)
    sweeps: int = 4                # coordinate-descent passes over each layer's fan-in
    damping: float = 0.01          # x mean diag of the Gram matrix, pulls s*q towards w (regularises)
    min_rows_per_input: float = 4.0  # a layer needs >= this many rows per fan-in weight, else nearest
    max_fan_in: int = 27           # only layers with fan-in <= this (conv1, depthwise; 0: every layer)
    target: str = "int8_input"     # int8_input: ||X_q (v - w)||; float_input: ||X_q v - X_f w|| (asymmetric)


@dataclass(frozen=True)
class _Op:
    index: int
    kind: str        # CONV_2D | DEPTHWISE_CONV_2D | FULLY_CONNECTED
    inp: int         # input activation tensor
    weight: int      # weight tensor
    name: str        # output tensor's first name (matches the float graph's)


def _ops(it) -> list[_Op]:
    details = {d["index"]: d for d in it.get_tensor_details()}
    out = []
    for op in it._get_ops_details():  # noqa: SLF001 - the only op-level view LiteRT gives
        if op["op_name"] in BIASED_OPS:
            out.append(_Op(int(op["index"]), op["op_name"], int(op["inputs"][0]), int(op["inputs"][1]),
                           details[int(op["outputs"][0])]["name"].split(";")[0]))
    return out


def _same_pad(size: int, k: int, stride: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def patches(x: np.ndarray, kh: int, kw: int, stride: tuple[int, int], same: bool) -> np.ndarray:
    """(n, H, W, C) -> (n, Ho, Wo, kh*kw, C): each output position's receptive field, TFLite padding."""
    if same:
        (t, b), (left, r) = _same_pad(x.shape[1], kh, stride[0]), _same_pad(x.shape[2], kw, stride[1])
        x = np.pad(x, ((0, 0), (t, b), (left, r), (0, 0)))
    ho = (x.shape[1] - kh) // stride[0] + 1
    wo = (x.shape[2] - kw) // stride[1] + 1
    cols = [x[:, i:i + stride[0] * (ho - 1) + 1:stride[0], j:j + stride[1] * (wo - 1) + 1:stride[1], :]
            for i in range(kh) for j in range(kw)]
    return np.stack(cols, axis=3)


class _Stats:
    """Centered Gram statistics of (X_q, X_f) rows; shared over channels (conv, dense) or per channel."""

    def __init__(self):
        self.n = 0
        self.sq = self.sf = self.gqq = self.gqf = self.gff = None

    def add(self, xq: np.ndarray, xf: np.ndarray) -> None:
        """xq, xf: (rows, K) for shared statistics, or (C, rows, K) per channel."""
        xq, xf = xq.astype(np.float64), xf.astype(np.float64)
        t = np.swapaxes
        parts = (xq.sum(-2), xf.sum(-2), t(xq, -1, -2) @ xq, t(xq, -1, -2) @ xf, t(xf, -1, -2) @ xf)
        if self.sq is None:
            self.sq, self.sf, self.gqq, self.gqf, self.gff = parts
        else:
            for name, p in zip(("sq", "sf", "gqq", "gqf", "gff"), parts):
                setattr(self, name, getattr(self, name) + p)
        self.n += xq.shape[-2]

    def centered(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mq, mf = self.sq / self.n, self.sf / self.n
        outer = lambda a, b: a[..., :, None] * b[..., None, :]  # noqa: E731
        return (self.gqq - self.n * outer(mq, mq), self.gqf - self.n * outer(mq, mf),
                self.gff - self.n * outer(mf, mf))


def _rows(op: _Op, options, xq: np.ndarray, xf: np.ndarray, k_shape) -> tuple[np.ndarray, np.ndarray]:
    """im2col rows for one image batch: (rows, K) or, for depthwise, (C, rows, K)."""
    if op.kind == "FULLY_CONNECTED":
        return xq.reshape(-1, k_shape[-1]), xf.reshape(-1, k_shape[-1])
    kh, kw = int(k_shape[1]), int(k_shape[2])
    stride, same = (options.strideH, options.strideW), options.padding == 0
    if kh == kw == 1 and stride == (1, 1):
        return xq.reshape(-1, xq.shape[-1]), xf.reshape(-1, xf.shape[-1])
    pq, pf = patches(xq, kh, kw, stride, same), patches(xf, kh, kw, stride, same)
    if op.kind == "DEPTHWISE_CONV_2D":  # (n, Ho, Wo, 9, C) -> (C, rows, 9)
        c = pq.shape[-1]
        return (np.moveaxis(pq.reshape(-1, kh * kw, c), -1, 0), np.moveaxis(pf.reshape(-1, kh * kw, c), -1, 0))
    return pq.reshape(-1, kh * kw * pq.shape[-1]), pf.reshape(-1, kh * kw * pf.shape[-1])


def _channel_error(g: np.ndarray, t: np.ndarray, gff: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per channel ||X_q v - X_f w||^2 (centered) from the Gram matrices; v = s*q, w: (O, K)."""
    if g.ndim == 2:
        return (np.einsum("ok,kl,ol->o", v, g, v) - 2 * np.einsum("ok,kl,ol->o", v, t, w)
                + np.einsum("ok,kl,ol->o", w, gff, w))
    return (np.einsum("ok,okl,ol->o", v, g, v) - 2 * np.einsum("ok,okl,ol->o", v, t, w)
            + np.einsum("ok,okl,ol->o", w, gff, w))


def search(q0: np.ndarray, w: np.ndarray, s: np.ndarray, stats: _Stats, settings: RoundingSettings):
    """Coordinate descent on q (O, K) from the nearest rounding q0; returns (q, error nearest, error learned)."""
    g, t, gff = stats.centered()
    if settings.target == "int8_input":
        t = gff = g
    shared = g.ndim == 2
    lam = settings.damping * float(np.mean(np.diagonal(g, axis1=-2, axis2=-1)))
    eye = np.eye(g.shape[-1])
    gd, td = g + lam * eye, t + lam * eye
    ratio = w / s[:, None]
    lo = np.clip(np.floor(ratio), -127, 127)
    hi = np.clip(np.ceil(ratio), -127, 127)
    pinned = np.abs(q0) == 127  # each channel's largest weight stays where it is (it defines the scale)
    lo, hi = np.where(pinned, q0, lo), np.where(pinned, q0, hi)
    q = q0.astype(np.float64).copy()
    # u = d/dv (0.5 * damped error) per channel: G_d v - T_d w, with v = s q
    if shared:
        u = (q * s[:, None]) @ gd - w @ td.T
    else:
        u = np.einsum("okl,ol->ok", gd, q * s[:, None]) - np.einsum("okl,ol->ok", td, w)
    for _ in range(settings.sweeps):
        changed = 0
        for k in range(q.shape[1]):
            diag = gd[k, k] if shared else gd[:, k, k]
            step = s * s * diag
            up = step + 2 * s * u[:, k]
            down = step - 2 * s * u[:, k]
            delta = np.where((up < 0) & (q[:, k] + 1 <= hi[:, k]), 1.0, 0.0)
            delta = np.where((down < 0) & (q[:, k] - 1 >= lo[:, k]), -1.0, delta)
            moved = np.nonzero(delta)[0]
            if not len(moved):
                continue
            changed += len(moved)
            q[moved, k] += delta[moved]
            col = gd[k][None, :] if shared else gd[moved, k, :]
            u[moved] += (s[moved] * delta[moved])[:, None] * col
        if not changed:
            break
    e0 = _channel_error(g, t, gff, q0 * s[:, None], w)
    e1 = _channel_error(g, t, gff, q * s[:, None], w)
    # the search is on the damped error: keep nearest where the real error did not drop (beyond round-off)
    keep = e1 >= e0 - 1e-9 * np.abs(e0).max(initial=0.0)
    q[keep] = q0[keep]
    return q.astype(np.int8), e0, np.minimum(e1, e0)


def _float_inputs(float32: bytes, images: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Each named layer's input in the float32 graph, for every image (float16 to halve the memory)."""
    it = interpreter(float32, keep_all=True)
    by_name = {o.name: o for o in _ops(it)}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise CxrError(f"learned rounding: the float model has no layer {missing[0]!r}; not the same network")
    inp = it.get_input_details()[0]
    out: dict[str, np.ndarray] = {}
    for i, img in enumerate(images):
        it.set_tensor(inp["index"], img[None].astype(inp["dtype"]))
        it.invoke()
        for n in names:
            v = it.get_tensor(by_name[n].inp)[0]
            if n not in out:
                out[n] = np.empty((len(images),) + v.shape, np.float16)
            out[n][i] = v
    return out


def _dequant(values: np.ndarray, tensor) -> np.ndarray:
    q = tensor.quantization
    return (values.astype(np.float32) - float(q.zeroPoint[0])) * float(q.scale[0])


def count_layers(int8: bytes) -> int:
    return len([o for o in _ops(interpreter(int8)) if o.kind in BIASED_OPS])


def learn(int8: bytes, float32: bytes, calibration: np.ndarray, settings: RoundingSettings = RoundingSettings(),
          progress: Callable[[int], None] | None = None) -> tuple[bytes, dict]:
    """The int8 model with re-rounded weights, and a record (settings, per-layer errors before/after)."""
    from tensorflow.lite.tools import flatbuffer_utils

    images = subset(calibration, settings.images)
    if not len(images):
        raise CxrError("learned rounding: no calibration images")
    ops = _ops(interpreter(int8))
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(int8))
    sub, buffers = model.subgraphs[0], model.buffers
    f_it = interpreter(float32, keep_all=True)
    f_weights = {o.name: f_it.get_tensor(o.weight) for o in _ops(f_it)}
    x_float = _float_inputs(float32, images, [o.name for o in ops])
    replay = Replay(model, images)
    layers, changed_total = [], 0
    for op in ops:
        wt = sub.tensors[op.weight]
        w_shape = tuple(int(d) for d in wt.shape)
        scales = np.asarray(wt.quantization.scale, np.float64)
        fw = f_weights[op.name].astype(np.float64)
        fan_in = int(np.prod(w_shape[1:])) if op.kind != "DEPTHWISE_CONV_2D" else int(np.prod(w_shape[1:3]))
        options = sub.operators[op.index].builtinOptions
        dilated = getattr(options, "dilationWFactor", 1) != 1 or getattr(options, "dilationHFactor", 1) != 1
        q_raw = np.frombuffer(bytes(bytearray(buffers[wt.buffer].data)), np.int8).reshape(w_shape)
        if op.kind == "DEPTHWISE_CONV_2D":  # (1, kh, kw, C) -> (C, kh*kw)
            q0, w = q_raw.reshape(-1, w_shape[-1]).T, fw.reshape(-1, w_shape[-1]).T
        else:  # (O, ...) -> (O, K)
            q0, w = q_raw.reshape(w_shape[0], -1), fw.reshape(w_shape[0], -1)
        per_channel = len(scales) == q0.shape[0]
        s = scales if per_channel else np.full(q0.shape[0], scales[0])
        if op.index - 1 >= replay.done:
            replay.run(op.index - 1)
        xq_all = _dequant(replay.values[op.inp], sub.tensors[op.inp]) if op.index else None
        record = {"layer": op.name, "op": op.kind, "fan_in": fan_in}
        if xq_all is None or dilated or len(wt.quantization.scale) not in (1, q0.shape[0]):
            layers.append({**record, "skipped": "unsupported"})
        elif settings.max_fan_in and fan_in > settings.max_fan_in:
            layers.append({**record, "skipped": f"fan-in > {settings.max_fan_in}"})
        else:
            stats = _Stats()
            for xq_img, xf_img in zip(xq_all, x_float[op.name]):
                rq, rf = _rows(op, options, xq_img[None], xf_img[None].astype(np.float32), w_shape)
                stats.add(rq, rf)
            if stats.n < settings.min_rows_per_input * fan_in:
                layers.append({**record, "skipped": f"{stats.n} rows < {settings.min_rows_per_input:g} x fan-in"})
            else:
                q, e0, e1 = search(q0, w, s, stats, settings)
                n_changed = int((q != q0).sum())
                changed_total += n_changed
                new = q.T.reshape(w_shape) if op.kind == "DEPTHWISE_CONV_2D" else q.reshape(w_shape)
                buffers[wt.buffer].data = np.frombuffer(np.ascontiguousarray(new).tobytes(), np.uint8)
                ref = float(_channel_error(*stats.centered(), np.zeros_like(w), w).sum()) or 1.0
                layers.append({**record, "rows": int(stats.n), "weights_changed": n_changed,
                               "rel_error_nearest": round(float(np.sqrt(e0.sum() / ref)), 6),
                               "rel_error_learned": round(float(np.sqrt(e1.sum() / ref)), 6)})
        x_float.pop(op.name)
        if progress:
            progress(1)
    data = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    return data, {"method": "learned", **asdict(settings), "images": int(len(images)), "layers": len(ops),
                  "layers_rounded": sum("skipped" not in la for la in layers), "weights_changed": changed_total,
                  "per_layer": layers}


def int8_weights(data: bytes) -> dict[str, np.ndarray]:
    """Each weighted layer's int8 weights in a .tflite, by layer name (what the device will multiply)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    sub = model.subgraphs[0]
    out = {}
    for op in _ops(interpreter(data)):
        t = sub.tensors[op.weight]
        out[op.name] = np.frombuffer(bytes(bytearray(model.buffers[t.buffer].data)), np.int8).reshape(
            tuple(int(d) for d in t.shape))
    return out


__all__ = ["DEFAULT_IMAGES", "MODES", "RoundingSettings", "count_layers", "int8_weights", "learn", "patches",
           "search"]
