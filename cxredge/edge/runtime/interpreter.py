"""One way to load and run a .tflite model on any device. TF-free.

Runtimes, in order of preference: ai_edge_litert (LiteRT), tflite_runtime (legacy, last resort before
TensorFlow), tf.lite (only if TensorFlow happens to be installed; never imported otherwise).
Delegates: 'xnnpack' (the runtime's default CPU delegate), 'none' (plain built-in kernels, no default
delegates), or a path to an external delegate library (Edge TPU, GPU), loaded with options.
Inputs and outputs are (de)quantized with each tensor's own scale and zero point, int8 and uint8 alike.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxredge.errors import CxrError

TFLITE_IDENT = b"TFL3"
RUNTIME_ORDER = ("ai_edge_litert", "tflite_runtime", "tensorflow")
TENSOR_DTYPES = ("uint8", "int8", "int16", "float16", "float32")
MIN_SIDE, MAX_SIDE = 16, 2048  # input sides load_image can resize an X-ray to
CHANNELS = (1, 3)  # 3: RGB, gray copied; 1: the gray (luma) channel alone


@dataclass(frozen=True)
class Runtime:
    name: str
    version: str
    module: Any  # the module holding Interpreter and load_delegate


def find_runtime(prefer: str | None = None) -> Runtime:
    """The first importable LiteRT runtime (or `prefer`, if given)."""
    order = (prefer,) if prefer else RUNTIME_ORDER
    errors = []
    for name in order:
        try:
            if name == "ai_edge_litert":
                mod = importlib.import_module("ai_edge_litert.interpreter")
                version = getattr(importlib.import_module("ai_edge_litert"), "__version__", "?")
            elif name == "tflite_runtime":
                mod = importlib.import_module("tflite_runtime.interpreter")
                version = getattr(importlib.import_module("tflite_runtime"), "__version__", "?")
            elif name == "tensorflow":
                tf = importlib.import_module("tensorflow")
                mod, version = tf.lite, tf.__version__
                mod.load_delegate = tf.lite.experimental.load_delegate
            else:
                raise CxrError(f"--runtime {name}: expected one of {', '.join(RUNTIME_ORDER)}")
            return Runtime(name, str(version), mod)
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
    raise CxrError("no TFLite runtime found: pip install ai-edge-litert (" + "; ".join(errors) + ")")


def check_tflite_file(path: str | Path) -> Path:
    """Fail with a clear message unless `path` is a TFLite flatbuffer (identifier 'TFL3' at byte 4)."""
    path = Path(path)
    if not path.is_file():
        raise CxrError(f"{path}: model file not found")
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8 or head[4:8] != TFLITE_IDENT:
        raise CxrError(f"{path}: not a TFLite model (no 'TFL3' flatbuffer identifier)")
    return path


def max_threads() -> int:
    """The most interpreter threads cxredge accepts: 4 per CPU core (at least 4); more only oversubscribes."""
    import os

    return 4 * max(1, os.cpu_count() or 1)


def check_threads(threads: int, option: str = "--threads") -> int:
    """`threads` if 1 <= threads <= max_threads(), else CxrError naming the option."""
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= max_threads():
        raise CxrError(f"{option} {threads}: expected 1..{max_threads()} (4 per CPU core of this machine)")
    return threads


def tensor_spec(detail: dict) -> dict:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return {"name": detail["name"], "shape": [int(s) for s in detail["shape"]],
            "dtype": np.dtype(detail["dtype"]).name, "scale": float(scale), "zero_point": int(zero_point)}


def to_channels(x: np.ndarray, spec: dict) -> np.ndarray:
    """RGB pixels (..., 3) for a 1-channel input: its luma (ITU-R 601, as Pillow's 'L'; gray stays gray)."""
    shape = spec.get("shape") or []
    if not shape or shape[-1] != 1 or x.ndim == 0 or x.shape[-1] != 3:
        return x
    if x.dtype == np.uint8:
        w = x.astype(np.uint32)
        return ((w[..., 0] * 299 + w[..., 1] * 587 + w[..., 2] * 114 + 500) // 1000).astype(np.uint8)[..., None]
    return (x[..., :1] * 0.299 + x[..., 1:2] * 0.587 + x[..., 2:3] * 0.114).astype(x.dtype)


def quantize(x: np.ndarray, spec: dict) -> np.ndarray:
    """Float (or raw uint8 pixels) -> the tensor's dtype, by its own scale and zero point."""
    x = to_channels(x, spec)
    dtype = np.dtype(spec["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    if spec["scale"] == 1.0 and spec["zero_point"] == 0 and x.dtype == dtype:
        return x  # raw pixels into a uint8 input of scale 1, zero point 0: no arithmetic at all
    info = np.iinfo(dtype)
    q = np.round(x.astype(np.float32) / spec["scale"]) + spec["zero_point"]
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, spec: dict) -> np.ndarray:
    """The tensor's values as float32: scale * (q - zero_point) for int8 and uint8 alike."""
    if np.dtype(spec["dtype"]).kind == "f" or not spec["scale"]:
        return q.astype(np.float32)
    return (spec["scale"] * (q.astype(np.float32) - spec["zero_point"])).astype(np.float32)


def load_external_delegate(mod, library: str, options: dict[str, str]):
    """load_delegate(library, options), or CxrError. The library is opened with ctypes first, so a missing
    file fails cleanly (LiteRT's Delegate object otherwise prints an 'Exception ignored' trace on cleanup)."""
    import ctypes
    import gc
    import sys

    try:
        ctypes.CDLL(library)
    except OSError as exc:
        raise CxrError(f"--delegate {library}: could not load the library ({exc})") from None
    hook, sys.unraisablehook = sys.unraisablehook, lambda _: None  # a half-built Delegate's __del__ noise
    try:
        return mod.load_delegate(library, options)
    except (OSError, ValueError, AttributeError, RuntimeError) as exc:
        raise CxrError(f"--delegate {library}: not a usable delegate ({type(exc).__name__}: {exc})") from None
    finally:
        gc.collect()
        sys.unraisablehook = hook


def check_io(path: Path, interpreter) -> tuple[dict, dict]:
    """The (input, output) specs of a model cxredge can run, or one CxrError naming the file: one input
    [1, S, S, C] (NHWC, square, MIN_SIDE <= S <= MAX_SIDE, C in CHANNELS) and one output [1, classes >= 2],
    each of a dtype the (de)quantizer handles."""
    ins, outs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(ins) != 1 or len(outs) != 1:
        raise CxrError(f"{path}: {len(ins)} input(s) and {len(outs)} output(s); cxredge runs models with one image "
                       "input and one class-probabilities output")
    i, o = tensor_spec(ins[0]), tensor_spec(outs[0])
    shape, out = i["shape"], o["shape"]
    if len(shape) != 4 or shape[0] != 1:
        raise CxrError(f"{path}: input shape {shape} is not one image [1, height, width, channels] (NHWC)")
    if shape[1] != shape[2] or not MIN_SIDE <= shape[1] <= MAX_SIDE:
        raise CxrError(f"{path}: input shape {shape}: cxredge feeds square images of {MIN_SIDE} to {MAX_SIDE} "
                       "pixels a side")
    if shape[3] not in CHANNELS:
        raise CxrError(f"{path}: input shape {shape}: {shape[3]} channels; cxredge feeds 3 (RGB, gray copied) "
                       "or 1 (gray)")
    if len(out) != 2 or out[0] != 1 or out[1] < 2:
        raise CxrError(f"{path}: output shape {out} is not one row of class probabilities [1, classes >= 2]")
    for what, spec in (("input", i), ("output", o)):
        if spec["dtype"] not in TENSOR_DTYPES:
            raise CxrError(f"{path}: {what} dtype {spec['dtype']}; cxredge handles {', '.join(TENSOR_DTYPES)}")
        if spec["dtype"] in ("uint8", "int8", "int16") and spec["scale"] < 0:
            raise CxrError(f"{path}: {what} has a negative quantization scale {spec['scale']}")
    return i, o


def open_model(path: str | Path, labels: list[str], threads: int = 1, delegate: str = "xnnpack",
               delegate_options: dict[str, str] | None = None, runtime: Runtime | None = None) -> "TFLiteModel":
    """What predict and explain open: the TFLite file, its I/O checked (`check_io`), one output per label."""
    m = TFLiteModel(path, threads=threads, delegate=delegate, delegate_options=delegate_options, runtime=runtime)
    if m.num_classes != len(labels):
        raise CxrError(f"{m.path}: {m.num_classes} outputs but {len(labels)} labels ({', '.join(labels)})")
    return m


class TFLiteModel:
    """A loaded interpreter with one input (pixels) and one output (class probabilities)."""

    def __init__(self, path: str | Path, threads: int = 1, delegate: str = "xnnpack",
                 delegate_options: dict[str, str] | None = None, runtime: Runtime | None = None):
        self.path = check_tflite_file(path)
        check_threads(threads)
        self.runtime = runtime or find_runtime()
        self.delegate = delegate
        self.threads = threads
        self.interpreter = self._make(delegate, threads, delegate_options or {})
        self.input_spec, self.output_spec = check_io(self.path, self.interpreter)
        self._in = self.interpreter.get_input_details()[0]["index"]
        self._out = self.interpreter.get_output_details()[0]["index"]

    def _make(self, delegate: str, threads: int, options: dict[str, str]):
        mod = self.runtime.module
        kwargs: dict[str, Any] = {"model_path": str(self.path), "num_threads": threads}
        if delegate == "none":
            kwargs["experimental_op_resolver_type"] = mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        elif delegate != "xnnpack":
            kwargs["experimental_delegates"] = [load_external_delegate(mod, delegate, options)]
            kwargs["experimental_op_resolver_type"] = mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            it = mod.Interpreter(**kwargs)
            it.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise CxrError(f"{self.path}: the runtime could not load it ({exc})") from None
        return it

    @property
    def num_classes(self) -> int:
        return int(self.output_spec["shape"][-1])

    @property
    def image_size(self) -> int:
        """The square input side the model expects (224 for the cxredge contract)."""
        return int(self.input_spec["shape"][1])

    def check_input(self, image_shape: tuple[int, ...]) -> None:
        """Fail with a clear message unless the model takes one (1, H, W, 3) image of this shape (or its gray
        channel alone: (1, H, W, 1))."""
        shape = self.input_spec["shape"]
        wanted = tuple(image_shape[:2]) + ((1,) if shape[-1:] == [1] and image_shape[2:] == (3,) else image_shape[2:])
        if len(shape) != 4 or shape[0] != 1 or tuple(shape[1:]) != wanted:
            raise CxrError(f"{self.path}: input shape {shape} does not take one {tuple(image_shape)} image "
                           f"(expected [1, {', '.join(map(str, image_shape))}])")

    def set_input(self, pixels: np.ndarray) -> None:
        """pixels: one (H, W, 3) uint8 image or a (1, H, W, 3) batch."""
        x = pixels if pixels.ndim == 4 else pixels[None]
        self.interpreter.set_tensor(self._in, quantize(x, self.input_spec))

    def invoke(self) -> None:
        self.interpreter.invoke()

    def output(self) -> np.ndarray:
        return dequantize(self.interpreter.get_tensor(self._out), self.output_spec)

    def raw_output(self) -> np.ndarray:
        return self.interpreter.get_tensor(self._out).copy()

    def predict_proba(self, images: np.ndarray, progress=None) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, C) float32 probabilities (dequantized), one invoke per image."""
        out = np.empty((len(images), self.num_classes), dtype=np.float32)
        for i, img in enumerate(images):
            self.set_input(img)
            self.invoke()
            out[i] = self.output()[0]
            if progress:
                progress(1)
        return out

    def predict_all(self, images, progress=None) -> np.ndarray:
        """predict_proba over an array, or over the uint8 batches of a stream (edge/data/stream.py
        ImageStream: decoded while it runs, a batch at a time): the same (N, C) float32, row for row."""
        if isinstance(images, np.ndarray):
            return self.predict_proba(images, progress)
        parts = [self.predict_proba(batch, progress) for batch in images]
        return np.concatenate(parts) if parts else np.empty((0, self.num_classes), dtype=np.float32)
