"""Lossless pixels into the int8 network: the Rescaling's MUL gets the exact range of its output.

The model's first op is `scale_to_pm1` (Keras Rescaling 1/127.5, offset -1), which TFLite writes as a
MUL by a constant and an ADD. The calibrator records the MUL's output range as [-1, 2] although raw
pixels times 1/127.5 only span [0, 2], so the quantizer gives it a step of 3/255 = 0.0118: 1.5 gray
levels. Every pixel is rounded to that coarser grid before the first convolution, an error of up to
0.75 gray levels (sd ~0.43) on every image, which these X-ray models feel (float models flip 4% of
test images under Gaussian pixel noise of sd 0.5: benchmarks/results/quantize/int8_gap.md).

Setting the MUL output's min/max to exactly [min(0, 255 a), max(0, 255 a)] for the constant `a` makes
its step 255 a / 255 = a (one gray level) with an integer zero point, so the uint8 pixels pass the MUL
without rounding. The graph, op set and every other range stay as calibrated; only two numbers of the
calibrated model's statistics change, before the quantizer sees them. Same calibration, same bytes.
"""
from __future__ import annotations

import numpy as np


def _name(tensor) -> str:
    n = tensor.name
    return n.decode() if isinstance(n, bytes) else str(n)


def apply(calibrated: bytes) -> tuple[bytes, list[dict]]:
    """The calibrated model with every pixel-reading MUL's output range made exact, and what changed.

    A pixel-reading MUL: a MUL whose one input is the model's input and whose other input is a scalar
    constant. Models without one (no Rescaling layer) come back unchanged with an empty record.
    """
    from tensorflow.lite.python.schema_py_generated import BuiltinOperator
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(calibrated))
    sub = model.subgraphs[0]
    pixels = {int(i) for i in sub.inputs}
    changed = []
    for op in sub.operators:
        if model.operatorCodes[op.opcodeIndex].builtinCode != BuiltinOperator.MUL or len(op.inputs) != 2:
            continue
        ins = [int(i) for i in op.inputs]
        if not any(i in pixels for i in ins):
            continue
        const = [i for i in ins if i not in pixels]
        data = model.buffers[sub.tensors[const[0]].buffer].data if const else None
        if data is None or len(data) != 4:  # a float32 scalar
            continue
        a = float(np.frombuffer(bytes(bytearray(data)), dtype=np.float32)[0])
        inp = sub.tensors[[i for i in ins if i in pixels][0]].quantization
        if inp is None or inp.min is None or inp.max is None:
            continue
        ends = sorted((a * float(inp.min[0]), a * float(inp.max[0])))
        lo, hi = min(0.0, ends[0]), max(0.0, ends[1])
        out = sub.tensors[int(op.outputs[0])]
        q = out.quantization
        if q is None or q.min is None or q.max is None:
            continue
        before = [float(q.min[0]), float(q.max[0])]
        q.min, q.max = np.array([lo], np.float32), np.array([hi], np.float32)
        changed.append({"tensor": _name(out), "calibrated": before, "exact": [lo, hi]})
    if not changed:
        return calibrated, []
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), changed


__all__ = ["apply"]
