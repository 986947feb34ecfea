"""Keras model -> .tflite bytes, one preset per precision. Presets are data, not branches.

Every model is converted from a concrete function with a fixed (1, 224, 224, 3) float32 input (batch
1, as the device runs it). Full-integer int8 goes in two steps, so calibration runs once per model:
`calibrate()` (the calibrate-only pass over the representative images, on the float32 bytes) then
`quantize_calibrated()` (the MLIR quantizer: uint8 input, int8 or uint8 output, optional float
fallback of named nodes). The uint8 input must come out with scale 1.0 and zero point 0: the device
feeds raw pixels; anything else fails loudly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxredge.convert.calibration import input_range_anchor
from cxredge.convert.exact_input import apply as _exact_input
from cxredge.convert.opcheck import require_integer_only
from cxredge.errors import CxrError
from cxredge.keras import VERBOSE, keras, quiet_native_stderr, tf

INPUT_SHAPE = (1, 224, 224, 3)
IO_TYPES = ("uint8", "int8")


@dataclass(frozen=True)
class Preset:
    name: str                 # file stem and sidecar precision
    optimize: bool            # tf.lite.Optimize.DEFAULT
    supported_types: tuple[str, ...]  # target_spec.supported_types
    calibrated: bool          # needs the representative (calibration) images
    integer_only: bool        # full-integer body, checked op by op after conversion
    description: str


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("float32", False, (), False, False, "float32 reference: the Keras model as TFLite, no quantization"),
    Preset("float16", True, ("float16",), False, False, "float16 weights, float32 compute (half the file)"),
    Preset("dynamic", True, (), False, False, "dynamic range: int8 weights, float activations"),
    Preset("int8", True, (), True, True, "full integer: int8 weights and activations, uint8 pixels in"),
    Preset("qat_int8", True, (), True, True, "full integer from a quantization-aware fine-tuned model"),
    Preset("int8_fallback", True, (), True, False, "int8 with the K worst layers kept in float"),
    Preset("int8_refit", True, (), True, True, "full integer; head refitted to the int8 backbone's features"),
)}


def concrete_function(model: keras.Model):
    fn = tf.function(lambda x: model(x, training=False),
                     input_signature=[tf.TensorSpec(INPUT_SHAPE, tf.float32, name="pixels")])
    return fn.get_concrete_function()


def _variables_only(model: keras.Model) -> tf.Module:
    """What the converter must save next to the concrete function: the weights, nothing else.

    Passing the Keras model itself makes TF save it as a SavedModel first, tracing ~500 layer call
    functions (~11 of the ~15 s a conversion took); a bare tf.Module holding the same variables gives
    byte-identical .tflite files in ~4 s.
    """
    holder = tf.Module()
    holder.weights = list(model.variables)
    return holder


def _converter(model: keras.Model, preset: Preset):
    conv = tf.lite.TFLiteConverter.from_concrete_functions([concrete_function(model)], _variables_only(model))
    if preset.optimize:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if preset.supported_types:
        conv.target_spec.supported_types = [getattr(tf, t) for t in preset.supported_types]
    return conv


def convert_float(model: keras.Model, precision: str) -> bytes:
    """float32, float16 or dynamic: no calibration images needed."""
    preset = PRESETS[precision]
    if preset.calibrated:
        raise ValueError(f"{precision} needs calibration: use calibrate() + quantize_calibrated()")
    return bytes(_converter(model, preset).convert())


def representative_images(x: np.ndarray) -> np.ndarray:
    """The calibration images, plus the input-range anchor when the set does not span [0, 255]."""
    anchor = input_range_anchor(x)
    return x if anchor is None else np.concatenate([x, anchor[None]])


def calibrate(model: keras.Model, x: np.ndarray, progress=None, float_model: bytes | None = None,
              exact_input: bool = True) -> bytes:
    """Run the calibration pass: a float .tflite carrying min/max of every tensor.

    With `float_model` (the model's float32.tflite bytes, already converted) the calibrator runs on
    those bytes directly instead of converting the Keras model a second time: same int8 model
    (identical outputs on every image we compared), one conversion less (8 s vs 12 s for 200 images).
    `exact_input`: the pixel-scaling MUL's recorded range is replaced by its exact one
    (convert/exact_input.py), so every consumer of these statistics (the quantizer, the per-layer
    debugger, float fallback) sees the range the shipped model has and pixels enter losslessly.
    """
    images = representative_images(x)

    def gen():
        for img in images:
            if progress:
                progress(1)
            yield [img[None].astype(np.float32)]

    if float_model is not None:
        from tensorflow.lite.python.optimize import calibrator  # what the converter's own path calls

        data = bytes(calibrator.Calibrator(float_model).calibrate(gen))
    else:
        conv = _converter(model, PRESETS["int8"])
        conv.representative_dataset = gen
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv._experimental_calibrate_only = True  # noqa: SLF001 - the documented debugger path
        data = bytes(conv.convert())
    return _exact_input(data)[0] if exact_input else data


def quantize_calibrated(calibrated: bytes, io: str = "uint8", denylist: tuple[str, ...] = (),
                        what: str = "int8") -> bytes:
    """Calibrated float model -> full-integer .tflite with uint8 input and `io` output.

    `denylist`: output tensor names of nodes to keep in float (--float-fallback). The result is
    checked: uint8 input with scale 1.0 / zero point 0, and no op left in float except the denylisted.
    """
    if io not in IO_TYPES:
        raise CxrError(f"--io {io}: expected one of {', '.join(IO_TYPES)}")
    from tensorflow.lite.python.convert import mlir_quantize

    with quiet_native_stderr(not VERBOSE):  # its "fully_quantize: 0, inference_type: 6, ..." line
        data = mlir_quantize(calibrated, False, input_data_type=tf.uint8, output_data_type=getattr(tf, io),
                             denylisted_nodes=list(denylist) or None)
    data = bytes(data)
    require_integer_only(data, what, allowed_outputs=tuple(denylist))
    check_io(data, io, what)
    return data


def check_io(data: bytes, io: str, what: str) -> None:
    """uint8 pixels in with scale 1.0 and zero point 0; `io` probabilities out."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    scale, zp = inp["quantization"]
    if np.dtype(inp["dtype"]) != np.uint8 or scale != 1.0 or zp != 0:
        raise CxrError(f"{what}: input is {np.dtype(inp['dtype']).name} scale {scale} zero point {zp}; "
                       "raw uint8 pixels need scale 1.0 and zero point 0 (calibration range was not [0, 255])")
    if np.dtype(out["dtype"]).name != io:
        raise CxrError(f"{what}: output is {np.dtype(out['dtype']).name}, asked --io {io}")
