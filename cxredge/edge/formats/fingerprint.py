"""Which images a bench evaluated, and what each model predicted on them. TF-free.

Two benches (a laptop and a Pi, or one run over SSH) can only be compared image by image when they
name the same images the same way on both machines. File paths differ between machines; file bytes do
not. So every image gets an id: the first 12 hex digits of the sha256 of its file bytes.

bench.json keys written here (added, never renamed):
  dataset.images_sha256   sha256 over the sorted "<class>\\t<image sha256>" lines: equal on two devices
                          exactly when they evaluated the same labelled image files, whatever the order
  dataset.image_ids       the ids, space-separated, in evaluation order
  models[key].predicted   the predicted class index per image, space-separated, in image_ids order
  models[key].predictions_sha256   sha256 over the sorted "<image sha256>\\t<predicted class>" lines
"""
from __future__ import annotations

import hashlib
from pathlib import Path

ID_LEN = 12


def file_sha256s(paths: list[Path]) -> list[str]:
    out = []
    for p in paths:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        out.append(h.hexdigest())
    return out


def _digest(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


def dataset_keys(shas: list[str], labels, classes: list[str]) -> dict:
    """The dataset block's identity keys for images with file sha256 `shas` and true `labels`."""
    return {"images_sha256": _digest([f"{classes[int(y)]}\t{s}" for s, y in zip(shas, labels)]),
            "image_ids": " ".join(s[:ID_LEN] for s in shas)}


def prediction_keys(shas: list[str], predicted, classes: list[str]) -> dict:
    """One model's per-image predictions in a form two devices can compare exactly."""
    predicted = [int(p) for p in predicted]
    return {"predicted": " ".join(str(p) for p in predicted),
            "predictions_sha256": _digest([f"{s}\t{classes[p]}" for s, p in zip(shas, predicted)])}


def annotate(doc: dict, paths: list[Path], labels, predictions: dict, classes: list[str]) -> None:
    """Add the identity keys to a bench document: the dataset's, and each model's predictions."""
    shas = file_sha256s(paths)
    doc["dataset"].update(dataset_keys(shas, labels, classes))
    for key, predicted in predictions.items():
        if key in doc["models"] and predicted is not None and len(predicted) == len(shas):
            doc["models"][key].update(prediction_keys(shas, predicted, classes))


def predictions_by_id(dataset: dict, model: dict) -> dict[str, int] | None:
    """{image id: predicted class index} of one model of a bench, or None where not recorded."""
    ids, pred = (dataset or {}).get("image_ids"), (model or {}).get("predicted")
    if not ids or not pred:
        return None
    ids_l, pred_l = ids.split(), pred.split()
    if len(ids_l) != len(pred_l):
        return None
    return dict(zip(ids_l, (int(p) for p in pred_l)))
