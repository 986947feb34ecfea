"""What bench / predict / export read: a run directory, .tflite files, or a bundle. TF-free.

A run directory (DESIGN.md) holds run.json and <variant>/<precision>.tflite + sidecars. A bundle
(`cxredge export`) is a zip of the same layout, optionally with its test images under test_images/.
Models are listed in a fixed order: variant (fc, one_conv, two_conv, finetune, others), then
precision (float32, float16, dynamic, int8, qat_int8, others).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cxredge.edge.bench import ModelEntry
from cxredge.edge.dataset import Dataset, _class_folders, scan
from cxredge.edge.runtime import check_tflite_file
from cxredge.edge.sidecar import PRECISIONS, read_labels_file, read_sidecar
from cxredge.errors import CxrError
from cxredge.io import read_json

VARIANT_ORDER = ("fc", "one_conv", "two_conv", "finetune")
TEST_IMAGES = "test_images"


@dataclass
class Source:
    """Resolved inputs of a bench: the models, and where their labelled images may come from."""
    entries: list[ModelEntry]
    run_dir: Path | None = None
    run: dict | None = None
    test_images: Path | None = None  # a bundle's test_images/<class>/ folder
    origin: str = "models"  # run | models | bundle


def sort_key(path: Path) -> tuple:
    variant, precision = path.parent.name, path.stem
    vi = VARIANT_ORDER.index(variant) if variant in VARIANT_ORDER else len(VARIANT_ORDER)
    pi = PRECISIONS.index(precision) if precision in PRECISIONS else len(PRECISIONS)
    return (vi, variant, pi, precision, str(path))


def run_models(run_dir: Path) -> list[Path]:
    """Every <variant>/*.tflite of a run (one level down), in the fixed order."""
    return sorted(run_dir.glob("*/*.tflite"), key=sort_key)


def read_run(run_dir: Path) -> dict | None:
    path = run_dir / "run.json"
    if not path.is_file():
        return None
    run = read_json(path)
    if not isinstance(run, dict):
        raise CxrError(f"{path}: not a cxredge run.json (expected an object)")
    return run


def make_entry(path: Path, labels_file: Path | None = None, seen: set[str] | None = None) -> ModelEntry:
    """Check the file is TFLite, read its sidecar, and name it variant/precision."""
    path = check_tflite_file(path)
    side = read_sidecar(path)
    variant = (side or {}).get("variant") or path.parent.name or "model"
    precision = (side or {}).get("precision") or path.stem
    labels = read_labels_file(labels_file) if labels_file else (list(side["labels"]) if side else None)
    key = f"{variant}/{precision}"
    if seen is not None:
        base, n = key, 2
        while key in seen:
            key, n = f"{base}#{n}", n + 1
        seen.add(key)
    ref = path.with_name("float32.tflite")
    reference = ref if precision != "float32" and ref.is_file() else (path if precision == "float32" else None)
    return ModelEntry(path, key, variant, precision, labels, side, reference)


def from_run(run_dir: Path, labels_file: Path | None = None) -> Source:
    if not run_dir.is_dir():
        raise CxrError(f"--run {run_dir}: run folder not found (train and quantize first, or pass MODEL.tflite / BUNDLE.zip)")
    paths = run_models(run_dir)
    if not paths:
        raise CxrError(f"--run {run_dir}: no .tflite models in <variant>/ folders (run `cxredge quantize` first)")
    seen: set[str] = set()
    entries = [make_entry(p, labels_file, seen) for p in paths]
    test = run_dir / TEST_IMAGES
    return Source(entries, run_dir, read_run(run_dir), test if test.is_dir() else None, "run")


def from_paths(paths: list[Path], labels_file: Path | None = None) -> Source:
    """MODEL.tflite files and folders of them. The run around them (../run.json) is used when present."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(p.glob("*.tflite"), key=sort_key) or run_models(p)
            if not found:
                raise CxrError(f"{p}: folder has no .tflite models")
            files += found
        else:
            files.append(p)
    seen: set[str] = set()
    entries = [make_entry(p, labels_file, seen) for p in files]
    run_dir = next((d for d in (files[0].parent.parent, files[0].parent) if (d / "run.json").is_file()), None)
    return Source(entries, run_dir, read_run(run_dir) if run_dir else None, None, "models")


def dataset_for(source: Source, data: Path | None, split: str) -> tuple[Dataset, str]:
    """The labelled images to evaluate on, and a sentence saying where they came from.

    Order: --data, then a bundle's test images, then the run's own dataset (run.json data.path).
    `split` 'all' takes every image of the dataset.
    """
    run_data = (source.run or {}).get("data") or {}
    seed = run_data.get("split_seed") or 0
    if data is not None:
        return scan(data, seed=seed), f"--data {data}"
    if source.test_images is not None:
        return folder_dataset(source.test_images, split), f"{source.origin} test images"
    path = run_data.get("path")
    if path and Path(path).is_dir():
        return scan(path, seed=seed), f"the run's dataset (run.json data.path, split seed {seed})"
    where = f" (run.json data.path {path} is not on this machine)" if path else ""
    raise CxrError(f"no labelled images to evaluate on{where}: pass --data DIR, or export the bundle "
                   "--with-test-images")


def folder_dataset(root: Path, split: str = "test") -> Dataset:
    """DIR/<class>/* as one split named `split` (a bundle's test images, a labelled folder)."""
    classes, files = _class_folders(root)
    return Dataset(root, classes, {split: tuple(files)}, "test-only")


def merged_split(ds: Dataset) -> Dataset:
    """--split all: every image of every split as one split named 'all'."""
    files = tuple(f for s in ds.splits.values() for f in s)
    return Dataset(ds.root, ds.classes, {**ds.splits, "all": files}, ds.layout, ds.seed)


def check_labels(entries: list[ModelEntry], classes: list[str], where: str) -> None:
    """Every model's labels (or, for a bare model, its number of outputs) must match the dataset's classes."""
    for e in entries:
        if e.labels is None:
            continue
        if list(e.labels) != list(classes):
            raise CxrError(f"{e.path}: model labels ({', '.join(e.labels)}) differ from the classes of {where} "
                           f"({', '.join(classes)}); pass --labels FILE or --data matching the model")
