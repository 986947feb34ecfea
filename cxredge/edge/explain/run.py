"""Explain a list of images with one model (and optionally a second to compare) and write the results. TF-free.

Output folder (`cxredge explain --out`, by default `<run>/explain` so `cxredge report` finds it):
  explain.json             format cxredge-explain/1: models, settings, regions, one entry per image, summary
  overlays/NNN_<stem>_<model>.png    the film with its heatmap, colour bar and caption
  heatmaps/NNN_<stem>_<model>.npy    the (H, W) float32 heatmap (probability drop; Grad-CAM: 0..1)
  grid.png                 rows = classes, columns = images x models (what the report shows)
The JSON keeps each small grid (e.g. 13 x 13 drops) inline; the .npy files hold the image-size maps.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from cxredge.edge.data.images import load_image
from cxredge.edge.explain import render as R
from cxredge.edge.explain.occlusion import OcclusionSettings, Saliency, compare_maps, region_shares
from cxredge.errors import CxrError
from cxredge.formats import EXPLAIN_FORMAT, EXPLAIN_JSON
from cxredge.io import atomic_path, write_json

FIGURE_WIDTH = 320


@dataclass(frozen=True)
class Explainer:
    """One model ready to explain: `run(image, target, progress) -> Saliency`; `key` names its files."""
    key: str
    info: dict  # path, variant, precision, method, runtime, batch, threads, note
    run: Callable
    steps: int  # model evaluations per image (for the progress bar)


def true_class(path: Path, labels: list[str]) -> str | None:
    """The class a file's folder names (data/test/<class>/x.png), when that folder is one of the labels."""
    return path.parent.name if path.parent.name in labels else None


def explain_all(files: list[Path], explainers: list[Explainer], labels: list[str], settings: OcclusionSettings,
                out: Path, size: int, target: str | None = None, progress=None) -> dict:
    """Explain every file with every explainer; write overlays, heatmaps, grid.png and explain.json."""
    if target is not None and target not in labels:
        raise CxrError(f"--class {target}: not one of the model's labels ({', '.join(labels)})")
    entries, bad = [], []
    for i, f in enumerate(files):
        try:
            img = load_image(f, size)
        except CxrError as exc:
            bad.append(str(exc))
            continue
        entries.append(explain_one(i, f, img, explainers, labels, settings, out, target, progress))
    if not entries:
        raise CxrError(f"no image could be read: {bad[0]}" if bad else "no images given")
    doc = {"format": EXPLAIN_FORMAT, "models": [e.info for e in explainers], "labels": labels,
           "settings": {"patch": settings.patch, "stride": settings.stride, "fill": settings.fill,
                        "border": settings.border, "target": target or "predicted"},
           "regions": regions_doc(settings.border, size), "images": entries, "unreadable": bad,
           "summary": summary(entries, [e.key for e in explainers])}
    doc["grid"] = write_grid(doc, out)
    write_json(out / EXPLAIN_JSON, doc)
    return doc


def explain_one(i: int, f: Path, img: np.ndarray, explainers: list[Explainer], labels: list[str],
                settings: OcclusionSettings, out: Path, target: str | None, progress) -> dict:
    entry: dict = {"image": str(f), "true_class": true_class(f, labels)}
    t = labels.index(target) if target is not None else None
    first: Saliency | None = None
    for ex in explainers:
        sal = ex.run(img, t, progress)
        if first is None:
            first, t = sal, sal.target  # a compared model explains the first model's class
        stem = f"{i:03d}_{f.stem}_{ex.key}"
        res = model_entry(sal, labels, settings.border)
        cap = [f"{ex.key}: {res['label']} {res['probability']:.2f}"
               + (f" (true {entry['true_class']})" if entry["true_class"] else ""),
               f"{sal.method} for {labels[sal.target]}; border share {fmt_share(res['border_share'])}"]
        res["overlay"] = rel(R.save_png(R.figure(img, sal.heatmap, cap, settings.border),
                                        out / "overlays" / f"{stem}.png",
                                        FIGURE_WIDTH), out)
        res["heatmap_npy"] = rel(save_npy(out / "heatmaps" / f"{stem}.npy", sal.heatmap), out)
        if sal is not first:
            res["vs_" + explainers[0].key] = compare_maps(first, sal)
        entry[ex.key] = res
    return entry


def model_entry(sal: Saliency, labels: list[str], border: float) -> dict:
    top = int(sal.probabilities.argmax())
    return {"label": labels[top], "index": top, "probability": float(sal.probabilities[top]),
            "probabilities": {n: float(p) for n, p in zip(labels, sal.probabilities)},
            "target": labels[sal.target], "method": sal.method, "grid": np.round(sal.grid, 5).tolist(),
            "max_drop": float(sal.grid.max()), "min_drop": float(sal.grid.min()), "seconds": round(sal.seconds, 4),
            **region_shares(sal.heatmap, border)}


def regions_doc(border: float, size: int) -> dict:
    px = int(round(border * size))
    return {"border_fraction": border, "border_pixels": px, "border_area_share": 1 - (1 - 2 * px / size) ** 2,
            "definition": f"border strip = the outer {px} px ({border:.1%} of the side) on each side of the "
                          f"{size}x{size} model input; central region = the rest"}


def summary(entries: list[dict], keys: list[str]) -> dict:
    """Per class (the folder's class when known, else the first model's prediction) and over all images."""
    groups: dict[str, list[dict]] = {}
    for e in entries:
        groups.setdefault(e["true_class"] or e[keys[0]]["label"], []).append(e)
    per = {c: group_stats(g, keys) for c, g in groups.items()}
    return {"grouped_by": "true class" if all(e["true_class"] for e in entries) else "true class, else predicted",
            "per_class": per, "all": group_stats(entries, keys)}


def group_stats(group: list[dict], keys: list[str]) -> dict:
    out: dict = {"n": len(group)}
    for k in keys:
        out[k] = {"border_share_mean": mean([e[k]["border_share"] for e in group]),
                  "seconds_median": statistics.median(e[k]["seconds"] for e in group),
                  "accuracy": mean([float(e[k]["label"] == e["true_class"]) for e in group if e["true_class"]])}
        vs = [e[k].get("vs_" + keys[0]) for e in group if e[k].get("vs_" + keys[0])]
        if vs:
            out[k].update(pearson_mean=mean([v["pearson"] for v in vs]),
                          spearman_mean=mean([v["spearman"] for v in vs]),
                          same_class=mean([float(v["same_class"]) for v in vs]))
    return out


def mean(values: list) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def fmt_share(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def write_grid(doc: dict, out: Path, per_class: int = 2) -> str:
    """grid.png: one row per class, the first `per_class` images of it, each model's overlay side by side."""
    keys = [m["key"] for m in doc["models"]]
    rows, labels = [], []
    for c in doc["summary"]["per_class"]:
        group = [e for e in doc["images"] if (e["true_class"] or e[keys[0]]["label"]) == c][:per_class]
        rows.append([out / e[k]["overlay"] for e in group for k in keys])
        labels.append(c)
    cols = [f"image {n + 1}: {k}" for n in range(per_class) for k in keys]
    img = R.grid(rows, labels, cols, tile_width=180 if len(keys) > 1 else 220)
    R.save_png(img, out / "grid.png")
    return "grid.png"


def save_npy(path: Path, arr: np.ndarray) -> Path:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, arr.astype(np.float32))
    return path


def rel(path: Path, base: Path) -> str:
    return path.relative_to(base).as_posix()


def tflite_explainer(path: Path, shown: Path, settings: OcclusionSettings, batch: int | None, threads: int,
                     delegate: str, labels_file: Path | None) -> Explainer:
    """A .tflite (float or int8) behind a BatchRunner, explained by occlusion. batch None: DEFAULT_BATCH for a
    quantized model, 1 for a float one (batching int8 is 1.05-1.12x faster, float 0.92-0.99x: explain_speed.md)."""
    from cxredge.edge.explain.occlusion import DEFAULT_BATCH, BatchRunner, occlusion, positions
    from cxredge.edge.formats.sidecar import model_labels, read_sidecar
    from cxredge.edge.runtime.interpreter import check_tflite_file, open_model
    from cxredge.vocab import resolve_delegate

    check_tflite_file(path)
    names = model_labels(path, labels_file)
    m = open_model(path, names, threads=threads, delegate=resolve_delegate(delegate))
    settings.check(m.image_size)
    if batch is None:
        batch = (1 if m.input_spec["dtype"].startswith("float") and m.output_spec["dtype"].startswith("float")
                 else DEFAULT_BATCH)
    runner = BatchRunner(m, batch)
    side = read_sidecar(path) if labels_file is None else None
    key = (side or {}).get("precision") or path.stem
    info = {"key": key, "path": str(shown), "variant": (side or {}).get("variant"),
            "precision": (side or {}).get("precision"),
            "method": "occlusion", "runtime": f"{m.runtime.name} {m.runtime.version}", "delegate": delegate,
            "threads": threads, "batch": runner.batch, "batch_asked": batch, "note": runner.note,
            "labels": names, "image_size": m.image_size}
    steps = len(positions(m.image_size, settings.patch, settings.stride)) ** 2

    def run(img, target, progress):
        return occlusion(runner, img, settings, runner.batch, target, progress)

    return Explainer(key, info, run, steps)
