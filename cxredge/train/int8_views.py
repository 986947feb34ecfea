"""int8-aware training: the head also learns from the cuts an int8 backbone computes.

Why: the frozen ImageNet backbone, quantized to int8, hands the head features that differ from the
float ones by 15-27% (relative L2 on the test split of chest_xray_4class: 14.5% at two_conv's cut,
25.7% at one_conv's, 27.4% at fc's). A head that has only seen float features turns some of that
error into different answers. Frozen layers cannot adapt (and QAT must not unfreeze them), but the
head can learn to give the same answer for both.

How (cheap, because the backbone is frozen): the frozen part up to the cuts is converted once to a
full-integer model, calibrated with the same images `cxredge quantize` uses by default (a stratified
seeded sample of the train split: same images, same ranges for the frozen layers). Every cached train
view is run through it; its dequantized cuts become extra cached views. The tail then trains on float
and int8 views alike (one view per sample per epoch, drawn at random). The saved model is the plain
contract model: nothing int8 is left in it, only weights that read both kinds of features alike.
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

from cxredge.convert import bias_correction, calibration, quantize
from cxredge.convert.equalize import EqualizeSettings, for_int8
from cxredge.edge.data.dataset import Dataset
from cxredge.edge.evaluate.metrics import agreement
from cxredge.edge.runtime.interpreter import dequantize, tensor_spec
from cxredge.errors import CxrError
from cxredge.keras import keras
from cxredge.train.cache import predict


def calibration_manifest(ds: Dataset, dataset_sha256: str = "unknown") -> calibration.Manifest:
    """The manifest `cxredge quantize` draws by default (capped at the train split's size)."""
    n = min(calibration.DEFAULT_SIZE, len(ds.splits["train"]))
    return calibration.draw(ds, n, calibration.DEFAULT_SEED, dataset_sha256)


def int8_extractor(extractor: keras.Model, calib_images: np.ndarray) -> bytes:
    """The frozen extractor (pixels -> every cut) as a full-integer .tflite with uint8 pixels in, made as
    `cxredge quantize` makes int8 by default: channel-equalized copy, exact input, bias correction."""
    twin, float32, _ = for_int8(extractor, calib_images, EqualizeSettings())
    calibrated = quantize.calibrate(twin, calib_images, float_model=float32)
    # int8 out: no requantization at the cuts; checked full-integer with raw-pixel input
    int8 = quantize.quantize_calibrated(calibrated, "int8", what="int8-aware backbone")
    # bias-corrected on the same images, as `cxredge quantize` does by default
    images = bias_correction.subset(calib_images, bias_correction.DEFAULT_IMAGES)
    return bias_correction.correct(int8, float32, images)[0]


class Int8Cuts:
    """Runs the int8 extractor and returns dequantized cuts, in the Keras extractor's output order."""

    def __init__(self, model_bytes: bytes, extractor: keras.Model, num_threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        # every core: the int8 pass runs between float batches, never beside them
        self.it = Interpreter(model_content=model_bytes, num_threads=num_threads or os.cpu_count() or 1)
        self.it.allocate_tensors()
        self.input = self.it.get_input_details()[0]["index"]
        outputs = extractor.outputs
        shapes = [tuple(int(d) for d in o.shape[1:]) for o in outputs]
        if len(set(shapes)) != len(shapes):
            raise CxrError("int8-aware training needs cuts of distinct shapes")
        by_shape = {tuple(int(d) for d in o["shape"][1:]): o for o in self.it.get_output_details()}
        try:
            self.outputs = [by_shape[s] for s in shapes]
        except KeyError as exc:  # pragma: no cover - the converter keeps every output
            raise CxrError(f"int8 extractor lacks an output of shape {exc}") from None
        self.specs = [tensor_spec(o) for o in self.outputs]

    def __call__(self, images: np.ndarray, progress: Callable[[int], None] | None = None) -> list[np.ndarray]:
        """uint8 (or integer-valued float) images (N, 224, 224, 3) -> one float32 array per cut."""
        out = [np.empty((len(images),) + tuple(o["shape"][1:]), np.float32) for o in self.outputs]
        for i, img in enumerate(images):
            self.it.set_tensor(self.input, np.asarray(img, dtype=np.uint8)[None])
            self.it.invoke()
            for arr, o, spec in zip(out, self.outputs, self.specs):
                arr[i] = dequantize(self.it.get_tensor(o["index"])[0], spec)
            if progress:
                progress(1)
        return out


def as_pixels(x: np.ndarray) -> np.ndarray:
    """A transformed view (float32 0..255) as the uint8 pixels the device would see."""
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def forecast_agreement(tail: keras.Model, float_pred: np.ndarray, int8_cut: np.ndarray) -> float:
    """Share of images where the tail gives on the int8 cut the class it gave on the float cut
    (`float_pred`): what the int8 model's agreement will be, less the int8 error of the tail's own
    layers."""
    return agreement(predict(tail, int8_cut).argmax(1), float_pred)
