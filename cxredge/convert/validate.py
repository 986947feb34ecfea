"""Compare every .tflite with its Keras original on real images (the val split by default).

The reference is the Keras model's probabilities on the same uint8 images. The images are a stream of
decoded batches (edge/data/stream.py ImageStream, from `Split.stream()`) or an array: each model's pass
decodes the split again, batch by batch, so no pass holds it whole; what a Reference keeps per image is
its label and the Keras probabilities. Each .tflite runs with the
edge runtime (`cxredge.edge.runtime.interpreter.TFLiteModel`, ai_edge_litert), exactly as on a device. float32
must agree to max |dprob| <= 1e-4 or conversion failed; quantized models report top-1 agreement,
macro-F1 and its change, max/mean |dprob| and how many outputs tie at the maximum (8-bit outputs).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxredge.edge.data.stream import ArrayImages, ImageStream, as_images
from cxredge.edge.evaluate.metrics import agreement, classification_metrics
from cxredge.edge.runtime.interpreter import TFLiteModel
from cxredge.errors import CxrError

FLOAT32_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Reference:
    split: str
    images: ImageStream | ArrayImages  # the N uint8 images, read again (decoded batch by batch) per model
    y: np.ndarray        # (N,) true labels
    probs: np.ndarray    # (N, C) Keras float probabilities
    classes: tuple[str, ...]

    @property
    def pred(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    def float_metrics(self) -> dict:
        return classification_metrics(self.y, self.pred, self.classes)


PREDICT_BATCH = 16


def keras_reference(model, images, y: np.ndarray, classes, split: str) -> Reference:
    """The Keras model's probabilities on `images` (an ImageStream or an array), 16 images per predict batch: a
    stream's batches are a multiple of 16, so each predict batch holds the same images as over one array, and
    the numbers are model.predict(x, batch_size=16)'s bit for bit. predict_on_batch, because every
    model.predict call keeps ~1-3 MB (tf_keras; measured: +570 MB over 200 calls), which grew with N per batch."""
    images = as_images(images)
    if getattr(images, "batch_size", PREDICT_BATCH) % PREDICT_BATCH:
        raise ValueError(f"a stream of {images.batch_size}-image batches: keras_reference needs a multiple of 16")
    parts = [np.asarray(model.predict_on_batch(batch[i:i + PREDICT_BATCH].astype(np.float32)), dtype=np.float32)
             for batch in images for i in range(0, len(batch), PREDICT_BATCH)]
    return Reference(split, images, y, np.concatenate(parts), tuple(classes))


def tied_at_max(probs: np.ndarray) -> int:
    """Rows whose largest output value occurs more than once (argmax then picks the first)."""
    top = probs.max(axis=1, keepdims=True)
    return int(((probs == top).sum(axis=1) > 1).sum())


def compare(probs: np.ndarray, ref: Reference) -> dict:
    """The validation record for one model's probabilities on the reference images."""
    pred = probs.argmax(axis=1)
    m = classification_metrics(ref.y, pred, ref.classes)
    f = ref.float_metrics()
    diff = np.abs(probs - ref.probs)
    return {"split": ref.split, "n": int(len(ref.y)), "reference": "keras float model",
            "max_abs_dprob": float(diff.max()), "mean_abs_dprob": float(diff.mean()),
            "agreement": agreement(pred, ref.pred), "disagreements": int((pred != ref.pred).sum()),
            "accuracy": m["accuracy"], "accuracy_float": f["accuracy"],
            "macro_f1": m["macro_f1"], "macro_f1_float": f["macro_f1"],
            "delta_macro_f1": m["macro_f1"] - f["macro_f1"], "tied_at_max": tied_at_max(probs)}


def run_tflite(path: str | Path, images, progress=None) -> np.ndarray:
    """The model's (N, C) probabilities on an array or an ImageStream (decoded again, batch by batch)."""
    return TFLiteModel(path, threads=1).predict_all(images, progress=progress)


def validate(path: str | Path, precision: str, ref: Reference, progress=None) -> dict:
    """Run `path` on the reference images; float32 beyond tolerance raises CxrError."""
    record = compare(run_tflite(path, ref.images, progress), ref)
    if precision == "float32" and record["max_abs_dprob"] > FLOAT32_TOLERANCE:
        raise CxrError(f"{precision}.tflite: max |dprob| {record['max_abs_dprob']:.2e} vs the Keras model on "
                       f"{ref.split} exceeds {FLOAT32_TOLERANCE:.0e}; conversion changed the model")
    return record
