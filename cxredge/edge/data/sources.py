"""What bench / predict / export read: a run directory, .tflite files, or a bundle. TF-free.

A run directory (its layout: cxredge/formats.py) holds run.json and <variant>/<precision>.tflite +
sidecars. A bundle (`cxredge export`) is a zip of the same layout, optionally with its test images under
test_images/. Models are listed in a fixed order: variant, then precision, each in cxredge/vocab.py's
order (VARIANTS, PRECISIONS), unknown names last.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cxredge.edge.data.dataset import Dataset, class_folders, scan_eval, scan_recorded
from cxredge.edge.data.table import DataOptions
from cxredge.edge.formats.sidecar import read_labels_file, read_sidecar
from cxredge.edge.runtime.interpreter import check_tflite_file
from cxredge.errors import CxrError
from cxredge.formats import RUN_JSON, TEST_IMAGES
from cxredge.io import read_json, sha256_file
from cxredge.vocab import PRECISIONS, VARIANTS, order_key


@dataclass
class ModelEntry:
    """One .tflite to bench: where it is, what it is, which labels its outputs carry."""
    path: Path
    key: str                 # unique display name, e.g. "two_conv/int8"
    variant: str
    precision: str
    labels: list[str] | None
    sidecar: dict | None = None
    reference: Path | None = None  # the float32 model of the same variant, for agreement
    size_bytes: int = field(init=False)
    sha256: str = field(init=False)  # computed from the file here, never copied from the sidecar

    def __post_init__(self):
        self.size_bytes = self.path.stat().st_size
        self.sha256 = sha256_file(self.path)


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
    return (order_key(VARIANTS, variant), variant, order_key(PRECISIONS, precision), precision, str(path))


def run_models(run_dir: Path) -> list[Path]:
    """Every <variant>/*.tflite of a run (one level down), in the fixed order."""
    return sorted(run_dir.glob("*/*.tflite"), key=sort_key)


def read_run(run_dir: Path) -> dict | None:
    path = run_dir / RUN_JSON
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
        raise CxrError(f"--run {run_dir}: run folder not found (train and quantize first, or pass "
                       f"MODEL.tflite / BUNDLE.zip)")
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
    run_dir = next((d for d in (files[0].parent.parent, files[0].parent) if (d / RUN_JSON).is_file()), None)
    return Source(entries, run_dir, read_run(run_dir) if run_dir else None, None, "models")


def dataset_for(source: Source, data: Path | None, split: str) -> tuple[Dataset, str]:
    """The labelled images to evaluate on, and a sentence saying where they came from.

    Order: --data, then a bundle's test images, then the run's own dataset (run.json data.path).
    --data naming the run's own dataset keeps the run's split; any other folder is read by `scan_eval`
    (an external test set: test/<class>/ only, or <class>/ folders whose every image is a test image).
    """
    run_data = (source.run or {}).get("data") or {}
    seed = run_data.get("split_seed") or 0
    path = run_data.get("path")
    table = (run_data.get("table") or {}).get("file")
    if table and path:
        path = str(Path(path) / table)
    on_disk = bool(path) and Path(path).exists()
    if data is not None:
        if on_disk and Path(data).resolve() == Path(path).resolve():
            return scan_recorded(run_data, data), f"--data {data} (the run's dataset, its split seed {seed})"
        ds = scan_eval(data, DataOptions.from_dict(run_data.get("options")))
        how = {"test-only": "every image as test", "splits-without-train": "its split folders"}.get(ds.layout)
        return ds, f"--data {data}" + (f" ({how})" if how else "")
    if source.test_images is not None:
        return folder_dataset(source.test_images, split), f"{source.origin} test images"
    if on_disk:
        return scan_recorded(run_data), f"the run's dataset (run.json data.path, split seed {seed})"
    where = f" (run.json data.path {path} is not on this machine)" if path else ""
    raise CxrError(f"no labelled images to evaluate on{where}: pass --data DIR, or export the bundle "
                   "--with-test-images")


def eval_dataset(source: Source, data: Path | None, split: str) -> tuple[Dataset, str]:
    """dataset_for + --split all + the dataset's classes matched to the models' labels by name.

    Returns the dataset (classes = the models' labels, in their order; a class with no images is
    allowed: its per-class metrics are null) and where it came from.
    """
    ds, where = dataset_for(source, data, split)
    if split == "all":
        ds = merged_split(ds)
    if split not in ds.splits:
        raise CxrError(f"--split {split}: {where} has no {split} images (it has {', '.join(ds.splits)}); "
                       f"try --split {next(iter(ds.splits))}")
    labels = model_labels(source.entries)
    return (ds, where) if labels is None else (align_classes(ds, labels, where), where)


def model_labels(entries: list[ModelEntry]) -> list[str] | None:
    """The label list all labelled models share (None when no model carries labels)."""
    labelled = [e for e in entries if e.labels is not None]
    for e in labelled[1:]:
        if list(e.labels) != list(labelled[0].labels):
            raise CxrError(f"{e.path}: labels ({', '.join(e.labels)}) differ from {labelled[0].path} "
                           f"({', '.join(labelled[0].labels)}); bench models of one label set together")
    return list(labelled[0].labels) if labelled else None


def align_classes(ds: Dataset, labels: list[str], where: str) -> Dataset:
    """Relabel a dataset's images to the models' label order, matching class folders by name
    (exactly, else case-insensitively). A folder that names no model class is an error."""
    if list(ds.classes) == list(labels):
        return ds
    lower = {lab.lower(): i for i, lab in enumerate(labels)}
    index = {}
    for c in ds.classes:
        i = labels.index(c) if c in labels else lower.get(c.lower())
        if i is None:
            raise CxrError(f"{where}: class folder '{c}' is not a class of the model ({', '.join(labels)}); "
                           "rename or remove it")
        index[ds.classes.index(c)] = i
    splits = {s: tuple((p, index[y]) for p, y in files) for s, files in ds.splits.items()}
    return Dataset(ds.root, tuple(labels), splits, ds.layout, ds.seed)


def folder_dataset(root: Path, split: str = "test") -> Dataset:
    """DIR/<class>/* as one split named `split` (a bundle's test images, a labelled folder)."""
    classes, files = class_folders(root)
    return Dataset(root, classes, {split: tuple(files)}, "test-only")


def merged_split(ds: Dataset) -> Dataset:
    """--split all: every image of every split as one split named 'all'."""
    files = tuple(f for s in ds.splits.values() for f in s)
    return Dataset(ds.root, ds.classes, {**ds.splits, "all": files}, ds.layout, ds.seed)
