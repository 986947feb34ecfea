"""Read a .tflite flatbuffer and find the ops that compute in float. TF-free (ai_edge_litert's schema).

An op "computes in float" when one of its outputs is a float tensor, or one of its inputs is a float
tensor that is not a constant buffer. Two boundary ops are allowed: QUANTIZE reading a model input
and DEQUANTIZE writing a model output (float I/O around an integer body). A full-integer model with
uint8/int8 I/O has no float op at all; a dynamic-range model has many (float activations).
"""
from __future__ import annotations

from dataclasses import dataclass

from cxredge.errors import CxrError

FLOAT_TYPES = {0, 1, 10, 18}  # FLOAT32, FLOAT16, FLOAT64, BFLOAT16 (schema TensorType)


@dataclass(frozen=True)
class OpInfo:
    index: int
    name: str           # builtin operator name, e.g. CONV_2D
    output: str         # name of its first output tensor (what the quantizer's denylist uses)
    float_compute: bool


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise CxrError(f"reading .tflite ops needs ai-edge-litert: pip install ai-edge-litert ({exc})") from None
    return schema


def list_ops(model_bytes: bytes) -> list[OpInfo]:
    """Every operator of the main subgraph, in execution order."""
    schema = _schema()
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(model_bytes, 0)
    graph = model.Subgraphs(0)
    inputs = {int(graph.Inputs(i)) for i in range(graph.InputsLength())}
    outputs = {int(graph.Outputs(i)) for i in range(graph.OutputsLength())}
    ops = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        ins = [int(op.Inputs(k)) for k in range(op.InputsLength()) if op.Inputs(k) >= 0]
        outs = [int(op.Outputs(k)) for k in range(op.OutputsLength())]

        def is_float(t: int) -> bool:
            return graph.Tensors(t).Type() in FLOAT_TYPES

        def is_const(t: int) -> bool:
            buf = model.Buffers(graph.Tensors(t).Buffer())
            return buf is not None and (buf.DataLength() > 0 or buf.Size() > 0)

        float_in = [t for t in ins if is_float(t) and not is_const(t)]
        float_out = [t for t in outs if is_float(t)]
        if name == "QUANTIZE" and set(float_in) <= inputs and not float_out:
            float_in = []
        if name == "DEQUANTIZE" and set(float_out) <= outputs and not float_in:
            float_out = []
        out_name = graph.Tensors(outs[0]).Name().decode() if outs else ""
        ops.append(OpInfo(i, name, out_name, bool(float_in or float_out)))
    return ops


def float_ops(model_bytes: bytes) -> list[OpInfo]:
    return [op for op in list_ops(model_bytes) if op.float_compute]


def require_integer_only(model_bytes: bytes, what: str, allowed_outputs: tuple[str, ...] = ()) -> list[OpInfo]:
    """Raise CxrError unless every op computes in integers (ops writing `allowed_outputs` excepted,
    e.g. the layers a --float-fallback deliberately keeps in float). Returns the allowed float ops."""
    allowed = set(allowed_outputs)
    found = float_ops(model_bytes)
    bad = [op for op in found if not _is_allowed(op, allowed)]
    if bad:
        first = ", ".join(f"#{op.index} {op.name}" for op in bad[:3])
        raise CxrError(f"{what}: {len(bad)} op(s) compute in float after int8 conversion ({first}"
                       f"{', ...' if len(bad) > 3 else ''}); not a full-integer model")
    return [op for op in found if op not in bad]


def _is_allowed(op: OpInfo, allowed: set[str]) -> bool:
    # a denylisted node keeps its float op; the QUANTIZE/DEQUANTIZE ops around it are the glue.
    return op.output in allowed or op.name in ("QUANTIZE", "DEQUANTIZE") and bool(allowed)
