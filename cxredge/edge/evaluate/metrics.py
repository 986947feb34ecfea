"""Classification metrics from real predictions, in numpy. TF-free.

Keys follow the metrics.json contract (cxredge/formats.py, METRICS_KEYS): classes, accuracy,
macro_precision, macro_recall, macro_f1, weighted_f1, per_class {class: {precision, recall, f1,
support}}, confusion_matrix (rows = true class). Macro averages run over every class (scikit-learn's
labels=all classes); a class never predicted has precision 0 (zero_division=0).
"""
from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str] | tuple[str, ...]) -> dict:
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or len(y_true) == 0:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must be equal, non-empty 1-d")
    k = len(classes)
    cm = confusion_matrix(y_true, y_pred, k)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(k), where=denom > 0)
    weights = support / support.sum()
    return {
        "classes": list(classes),
        "n": int(len(y_true)),
        "accuracy": float(tp.sum() / len(y_true)),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "weighted_f1": float((f1 * weights).sum()),
        "per_class": {c: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                          "support": int(support[i])} for i, c in enumerate(classes)},
        "confusion_matrix": cm.tolist(),
    }


def agreement(pred_a: np.ndarray, pred_b: np.ndarray) -> float:
    """Share of inputs where two models give the same top-1 class."""
    pred_a, pred_b = np.asarray(pred_a), np.asarray(pred_b)
    return float((pred_a == pred_b).mean())
