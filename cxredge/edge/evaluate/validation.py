"""The clinical block of bench.json and metrics.json, from a bench's real probabilities. TF-free.

Keys added to every model in bench.json `models` and copied to each of its ok `results` rows (names are
only added, never renamed; docs/clinical-metrics.md):
  per_class[c]   + sensitivity, specificity, ppv, npv, auc, sens_at_spec95, threshold_at_spec95
                   (precision / recall / f1 / support were there before)
  macro_auc, brier, ece
  ci95           {method, accuracy, macro_f1, macro_auc: [lo, hi], sensitivity / specificity: {c: [lo, hi]}}
                 (null with --ci 0)
  paired_vs_float {reference, mcnemar_p, accuracy_diff, accuracy_diff_ci95, only_float_correct,
                   only_model_correct} against the float32 model of the same variant, on the same images
Only in `models` (not copied to rows): reliability {ece, bins, table} and roc {class: {fpr, tpr}}.
The document gains `clinical` {resamples, seed, seconds, spec_target, ece_bins, missing_classes}.
"""
from __future__ import annotations

import time

import numpy as np

from cxredge.edge.evaluate import clinical as C

ROW_KEYS = ("per_class", "macro_auc", "brier", "ece", "ci95", "paired_vs_float",
            "macro_f1", "macro_precision", "macro_recall")  # the macro averages change when a class is absent
ROC_GRID = np.linspace(0.0, 1.0, 51)


def roc_points(positive: np.ndarray, score: np.ndarray) -> dict | None:
    """The ROC curve on a fixed false-positive-rate grid (best sensitivity at fpr <= each grid value)."""
    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        return None
    thresholds = np.r_[np.inf, np.unique(score)[::-1]]
    pos, neg = np.sort(score[positive]), np.sort(score[~positive])
    tpr = 1 - np.searchsorted(pos, thresholds, side="left") / len(pos)
    fpr = 1 - np.searchsorted(neg, thresholds, side="left") / len(neg)
    best = [float(tpr[fpr <= g + 1e-12].max()) for g in ROC_GRID]
    return {"fpr": [round(float(g), 4) for g in ROC_GRID], "tpr": [round(t, 4) for t in best]}


def clinical_block(y: np.ndarray, prob: np.ndarray, classes: list[str], rs: C.Resampler | None) -> dict:
    """Point estimates, bootstrap CIs, ROC points of one model's probabilities."""
    block = C.clinical_metrics(y, prob, classes)
    block["ci95"] = C.bootstrap_ci(y, prob, classes, rs) if rs is not None else None
    block["roc"] = {c: roc_points(np.asarray(y) == i, np.asarray(prob[:, i], dtype=np.float64))
                    for i, c in enumerate(classes)}
    return block


def absent(block: dict) -> list[str]:
    """The classes with no image in the data a clinical block was computed on."""
    return [c for c, v in block["per_class"].items() if v["support"] == 0]


def merge_into(metrics: dict, block: dict) -> None:
    """Add a clinical block to a metrics dict (classification_metrics' keys): per_class entries gain the
    clinical keys; classes absent from the data get null recall / F1 and the macro averages run over
    the classes present."""
    missing = absent(block)
    for c, values in block["per_class"].items():
        metrics.setdefault("per_class", {}).setdefault(c, {}).update(values)
    metrics.update({k: v for k, v in block.items() if k != "per_class"})
    if missing:
        present = [c for c in metrics["per_class"] if c not in missing]
        for c in missing:
            metrics["per_class"][c].update(recall=None, f1=None)
        for name in ("precision", "recall", "f1"):
            metrics[f"macro_{name}"] = float(np.mean([metrics["per_class"][c][name] for c in present]))
        metrics["macro_over"] = present


def attach(doc: dict, outcome, y: np.ndarray, classes: list[str], resamples: int = C.DEFAULT_RESAMPLES,
           seed: int = 0) -> None:
    """Compute the clinical block of every model of a bench and write it into the document."""
    t0 = time.perf_counter()
    rs = C.Resampler(len(y), resamples, seed) if resamples > 0 else None
    missing = [c for i, c in enumerate(classes) if not (np.asarray(y) == i).any()]
    for key, prob in outcome.probabilities.items():
        m = doc["models"][key]
        merge_into(m, clinical_block(y, prob, classes, rs))
        ref = outcome.references.get(key)
        m["paired_vs_float"] = (C.paired_vs_reference(y, outcome.predictions[key], ref[1], ref[0], rs)
                                if ref is not None else None)
    for row in doc["results"]:
        m = doc["models"].get(row["model"])
        if m is not None and row["status"] == "ok":
            row.update({k: m.get(k) for k in ROW_KEYS})
    doc["clinical"] = {"resamples": resamples, "seed": seed, "seconds": round(time.perf_counter() - t0, 3),
                       "spec_target": C.SPEC_TARGET, "ece_bins": C.ECE_BINS, "missing_classes": missing}
    if missing:
        doc["notes"] = list(doc.get("notes", [])) + [
            f"classes of the model with no images here: {', '.join(missing)}; their sensitivity, F1 and AUC "
            "are null and the macro averages run over the classes present"]
