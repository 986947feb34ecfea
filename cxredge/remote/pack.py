"""The bundle a remote device benches: the chosen models and the chosen labelled images. TF-free.

It is a `cxredge export` bundle (cxredge/edge/formats/bundle.py: models + sidecars + labels.txt, images under
test_images/<class>/), so the device runs the plain `cxredge bench BUNDLE.zip`. The images are the
ones a local `cxredge bench` with the same --data / --split / --limit would evaluate.
"""
from __future__ import annotations

from pathlib import Path

from cxredge.edge.data.dataset import Dataset, first_per_class
from cxredge.edge.formats.bundle import write_bundle
from cxredge.errors import CxrError


def chosen_images(ds: Dataset, split: str, limit: int | None) -> list[tuple[Path, int]]:
    items = list(zip(ds.paths(split), ds.labels(split).tolist()))
    if limit is not None:
        if limit < len(ds.classes):
            raise CxrError(f"--limit {limit} with --remote: the device needs at least one image per class "
                           f"({len(ds.classes)} classes)")
        items = first_per_class(items, limit)
    return items


def model_files(entries) -> dict[str, Path]:
    """{member: path} for every model and its sidecar, as <variant>/<precision>.tflite."""
    files: dict[str, Path] = {}
    for e in entries:
        stem, n = f"{e.variant}/{e.precision}", 2
        while f"{stem}.tflite" in files:
            stem, n = f"{e.variant}/{e.precision}_{n}", n + 1
        files[f"{stem}.tflite"] = e.path
        side = e.path.with_suffix(".json")
        if side.is_file():
            files[f"{stem}.json"] = side
    return files


def image_files(items: list[tuple[Path, int]], classes: list[str]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for i, (path, label) in enumerate(items):
        name = f"test_images/{classes[label]}/{path.name}"
        files[name if name not in files else f"test_images/{classes[label]}/{i}_{path.name}"] = path
    return files


def device_bundle(out: Path, source, ds: Dataset, split: str, limit: int | None, where: str) -> dict:
    """Write the bundle to `out`; return the dataset block saying which images went into it."""
    items = chosen_images(ds, split, limit)
    classes = list(ds.classes)
    files = {**model_files(source.entries), **image_files(items, classes)}
    write_bundle(out, files, {"classes": classes, "run": source.run})
    return {"source": where, "path": str(ds.root), "split": split, "n": len(items), "classes": classes,
            "limit": limit}
