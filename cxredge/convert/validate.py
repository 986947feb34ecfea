"""Compare every .tflite with its Keras original on real images (the val split by default).

The reference is the Keras model's probabilities on the same uint8 images. Each .tflite runs with the
edge runtime (`cxredge.edge.runtime.interpreter.TFLiteModel`, ai_edge_litert), exactly as on a device. float32
must agree to max |dprob| <= 1e-4 or conversion failed; quantized models report top-1 agreement,
macro-F1 and its change, max/mean |dprob| and how many outputs tie at the maximum (8-bit outputs).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxredge.edge.evaluate.metrics import agreement, classification_metrics
from cxredge.edge.runtime.interpreter import TFLiteModel
from cxredge.errors import CxrError

FLOAT32_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Reference:
    split: str
    x: np.ndarray        # (N, 224, 224, 3) uint8
    y: np.ndarray        # (N,) true labels
    probs: np.ndarray    # (N, C) Keras float probabilities
    classes: tuple[str, ...]

    @property
    def pred(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    def float_metrics(self) -> dict:
        return classification_metrics(self.y, self.pred, self.classes)


def keras_reference(model, x: np.ndarray, y: np.ndarray, classes, split: str) -> Reference:
    probs = model.predict(x.astype(np.float32), batch_size=16, verbose=0)
    return Reference(split, x, y, np.asarray(probs, dtype=np.float32), tuple(classes))


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


def run_tflite(path: str | Path, x: np.ndarray, progress=None) -> np.ndarray:
    return TFLiteModel(path, threads=1).predict_proba(x, progress=progress)


def validate(path: str | Path, precision: str, ref: Reference, progress=None) -> dict:
    """Run `path` on the reference images; float32 beyond tolerance raises CxrError."""
    record = compare(run_tflite(path, ref.x, progress), ref)
    if precision == "float32" and record["max_abs_dprob"] > FLOAT32_TOLERANCE:
        raise CxrError(f"{precision}.tflite: max |dprob| {record['max_abs_dprob']:.2e} vs the Keras model on "
                       f"{ref.split} exceeds {FLOAT32_TOLERANCE:.0e}; conversion changed the model")
    return record
