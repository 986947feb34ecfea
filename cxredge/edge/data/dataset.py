"""Class folders -> classes and train/val/test file lists, with the checks users need. TF-free.

Two layouts:
- `DIR/{train,val,test}/<class>/*` (val may be missing: then 15% of train, stratified and seeded);
- `DIR/<class>/*`: a seeded, stratified 70/15/15 split.
Which one was found, and the seed of any split made here, is recorded (`Dataset.describe()`).

Evaluation (`scan_eval`, used by bench on a folder given with --data) also takes an external test set:
`DIR/test/<class>/*` with no train/ (only the split folders that exist), or `DIR/<class>/*`, where every
image is a test image (no split is made: an external test set is never subsampled).

A label table (`--data TABLE.csv`, cxredge/edge/data/table.py) names the files, labels, patients and splits
instead of folders. Where patients are known (the table's patient column, --patient-regex on the file
names, or DICOM PatientID: cxredge/edge/data/patients.py), every split made here keeps each patient in one
split, and patients found in two given splits are counted as leakage (`describe()["patients"]`).
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from cxredge.edge.data import patients as P
from cxredge.edge.data.dicom import allow_any_modality
from cxredge.edge.data.dicom import summarise as dicom_summary
from cxredge.edge.data.images import is_image_file, load_image
from cxredge.edge.data.stream import ImageStream, decode_each
from cxredge.edge.data.table import TABLE_SUFFIXES, DataOptions, read_table
from cxredge.errors import CxrError
from cxredge.vocab import SPLITS

RATIOS = (0.70, 0.15, 0.15)


@dataclass(frozen=True)
class Dataset:
    root: Path
    classes: tuple[str, ...]
    splits: dict[str, tuple[tuple[Path, int], ...]]
    layout: str  # "splits" | "splits-val-from-train" | "class-folders" | "table" | "table-splits"
    seed: int | None = None
    patients: dict | None = field(default=None, compare=False, repr=False)  # path -> salted patient key
    info: dict | None = field(default=None, compare=False, repr=False)  # describe() extras: options, table, patients

    def paths(self, split: str) -> list[Path]:
        return [p for p, _ in self._get(split)]

    def labels(self, split: str) -> np.ndarray:
        return np.array([y for _, y in self._get(split)], dtype=np.int64)

    def counts(self) -> dict[str, dict[str, int]]:
        return {s: {c: int((self.labels(s) == i).sum()) for i, c in enumerate(self.classes)} for s in self.splits}

    def fingerprint(self) -> str:
        """sha256 over (split, class, relative path, file bytes) of every image."""
        h = hashlib.sha256()
        for split in SPLITS:
            for path, label in self.splits.get(split, ()):
                h.update(f"{split}/{self.classes[label]}/{path.relative_to(self.root).as_posix()}\n".encode())
                h.update(hashlib.sha256(path.read_bytes()).digest())
        return h.hexdigest()

    def describe(self) -> dict:
        return {"path": str(self.root), "layout": self.layout, "split_seed": self.seed,
                "classes": list(self.classes), "counts": self.counts(), **(self.info or {})}

    def patient_leaks(self) -> dict[str, int]:
        """Patients found in two splits ({'train/test': n, ...}); empty when none or no patient is known."""
        return P.leaks(self.splits, self.patients or {})

    def _get(self, split: str) -> tuple[tuple[Path, int], ...]:
        if split not in self.splits:
            raise CxrError(f"--split {split}: not one of {', '.join(self.splits)}")
        return self.splits[split]


def scan(root: str | Path, seed: int = 0, options: DataOptions | None = None) -> Dataset:
    """List the images of a dataset folder or label table; raise CxrError on any structural problem."""
    root = Path(root)
    options = options or DataOptions()
    if options.any_modality:
        allow_any_modality(True)
    if root.suffix.lower() in TABLE_SUFFIXES and not root.is_dir():
        return _scan_table(root, seed, options)
    if not root.exists():
        raise CxrError(f"--data {root}: folder not found")
    if not root.is_dir():
        raise CxrError(f"--data {root}: not a folder (nor a .csv/.tsv label table)")
    present = [s for s in SPLITS if (root / s).is_dir()]
    if present:
        return _scan_split_layout(root, present, seed, options)
    classes, files = class_folders(root)
    keys, source, unmatched = P.find_keys([p for p, _ in files], options.patient_regex)
    split = P.group_split(files, keys, len(classes), RATIOS, seed) if keys else \
        _stratified_split(files, len(classes), RATIOS, seed)
    return _with_patients(Dataset(root, classes, split, "class-folders", seed), options, keys, source, unmatched,
                          "by patient (seeded, stratified)" if keys else None)


def _with_patients(ds: Dataset, options: DataOptions, keys: dict, source, unmatched: int, how: str | None,
                   table: dict | None = None) -> Dataset:
    info = {} if options.is_default() else {"options": options.to_dict()}
    if table:
        info["table"] = table
    block = P.describe(ds.splits, keys, source, unmatched, how or "given (folders or split column)")
    if block:
        info["patients"] = block
    dicom = dicom_summary(p for files in ds.splits.values() for p, _ in files)
    if dicom:
        info["dicom"] = dicom
    return Dataset(ds.root, ds.classes, ds.splits, ds.layout, ds.seed, keys or None, info or None)


def _scan_table(table: Path, seed: int, options: DataOptions, evaluate: bool = False) -> Dataset:
    rows, info = read_table(table, options)
    classes = tuple(sorted({r.label for r in rows}))
    if len(classes) < 2:
        raise CxrError(f"--data {table}: {len(classes)} label left ({', '.join(classes)}); at least 2 are needed")
    files = [(r.path, classes.index(r.label)) for r in rows]
    keys, source, unmatched = P.find_keys([r.path for r in rows], options.patient_regex,
                                          {r.path: r.patient for r in rows if r.patient})
    root = table.parent.resolve()
    given = {r.split for r in rows}
    if given == {None} and evaluate:  # an external test table: every row is a test image
        split, how, layout, seed = {"test": tuple(sorted(files))}, "every row as test", "test-only", None
    elif given == {None}:
        split = P.group_split(files, keys, len(classes), RATIOS, seed) if keys else \
            _stratified_split(files, len(classes), RATIOS, seed)
        how, layout = ("by patient (seeded, stratified)" if keys else None), "table"
    else:
        if None in given:
            first = next(r for r in rows if r.split is None)
            raise CxrError(f"--data {table} line {first.line}: empty split (every row needs one, or drop the column)")
        for required in ("train", "test"):
            if required not in given:
                raise CxrError(f"--data {table}: the split column has no {required} rows")
        by = {s: tuple(sorted(f for f, r in zip(files, rows) if r.split == s)) for s in SPLITS}
        how, layout, seed_used = "given (split column)", "table-splits", None
        if not by["val"]:
            carved = (P.group_split(list(by["train"]), keys, len(classes), (0.85, 0.15, 0.0), seed) if keys
                      else _stratified_split(list(by["train"]), len(classes), (0.85, 0.15, 0.0), seed))
            by = {"train": carved["train"], "val": carved["val"], "test": by["test"]}
            how += "; val carved from train" + (" by patient" if keys else "")
            seed_used = seed
        split, seed = by, seed_used
    ds = Dataset(root, classes, split, layout, seed)
    return _with_patients(ds, options, keys, source, unmatched, how, {"file": table.name, **info})


def scan_eval(root: str | Path, options: DataOptions | None = None) -> Dataset:
    """A folder to evaluate on: the split folders it has (train/ not required), or every image of
    `DIR/<class>/` as the test split (layout "test-only"); a label table: its split column, else every row."""
    root = Path(root)
    if root.suffix.lower() in TABLE_SUFFIXES and not root.is_dir():
        return _scan_table(root, 0, options or DataOptions(), evaluate=True)
    if not root.is_dir():
        raise CxrError(f"--data {root}: " + ("folder not found" if not root.exists() else "not a folder"))
    present = [s for s in SPLITS if (root / s).is_dir()]
    if "train" in present and "test" in present:
        return scan(root)
    if not present:
        classes, files = class_folders(root, min_classes=1)
        return Dataset(root, classes, {"test": tuple(files)}, "test-only")
    per_split = {s: class_folders(root / s, min_classes=1) for s in present}
    union = tuple(sorted({c for cls, _ in per_split.values() for c in cls}))
    check_case(union, root)
    splits = {s: tuple((p, union.index(cls[y])) for p, y in files) for s, (cls, files) in per_split.items()}
    return Dataset(root, union, splits, "test-only" if present == ["test"] else "splits-without-train")


def scan_recorded(data: dict, root: str | Path | None = None) -> Dataset:
    """Re-open the dataset a run.json `data` block describes: its path (or `root` instead) with the
    split seed and the --data options (label table, patients) it recorded."""
    path = Path(root if root is not None else data["path"])
    table = (data.get("table") or {}).get("file")
    if table and path.is_dir():
        path = path / table
    return scan(path, seed=data.get("split_seed") or 0, options=DataOptions.from_dict(data.get("options")))


def _scan_split_layout(root: Path, present: list[str], seed: int, options: DataOptions) -> Dataset:
    for required in ("train", "test"):
        if required not in present:
            raise CxrError(f"--data {root}: has {', '.join(present)}/ but no {required}/ folder")
    per_split = {s: class_folders(root / s) for s in present}
    classes = per_split["train"][0]
    for s, (cls, _) in per_split.items():
        if cls != classes:
            raise CxrError(f"--data {root}: class folders differ between train/ ({', '.join(classes)}) "
                           f"and {s}/ ({', '.join(cls)})")
    splits = {s: tuple(files) for s, (_, files) in per_split.items()}
    keys, source, unmatched = P.find_keys([p for files in splits.values() for p, _ in files], options.patient_regex)
    if "val" in splits:
        ds = Dataset(root, classes, {s: splits[s] for s in SPLITS}, "splits")
        return _with_patients(ds, options, keys, source, unmatched, "given (folders)")
    carved = P.group_split(list(splits["train"]), keys, len(classes), (0.85, 0.15, 0.0), seed) if keys else \
        _stratified_split(list(splits["train"]), len(classes), (0.85, 0.15, 0.0), seed)
    ds = Dataset(root, classes, {"train": carved["train"], "val": carved["val"], "test": splits["test"]},
                 "splits-val-from-train", seed)
    return _with_patients(ds, options, keys, source, unmatched,
                          "given (folders); val carved from train" + (" by patient" if keys else ""))


def check_case(names, folder: Path) -> None:
    """Class folders that differ only by case (COVID/, covid/) are one class on some file systems and
    two on others, and match one model label: an error, never merged silently."""
    seen: dict[str, str] = {}
    for name in names:
        other = seen.setdefault(name.casefold(), name)
        if other != name:
            raise CxrError(f"--data {folder}: class folders '{other}' and '{name}' differ only by case; "
                           "rename or merge them")


def class_folders(folder: Path, min_classes: int = 2) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    dirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not dirs:
        raise CxrError(f"--data {folder}: no class folders inside (expected <class>/ image folders)")
    check_case([d.name for d in dirs], folder)
    files: list[tuple[Path, int]] = []
    for label, d in enumerate(dirs):
        imgs = sorted(p for p in d.iterdir() if not p.name.startswith(".") and is_image_file(p))
        if not imgs:
            raise CxrError(f"--data {d}: class folder has no images (.png/.jpg/.dcm)")
        files.extend((p, label) for p in imgs)
    if len(dirs) < min_classes:
        raise CxrError(f"--data {folder}: found 1 class folder ({dirs[0].name}); at least 2 classes are needed")
    return tuple(d.name for d in dirs), files


def _stratified_split(files, n_classes, ratios, seed) -> dict[str, tuple[tuple[Path, int], ...]]:
    rng = random.Random(seed)
    out: dict[str, list] = {s: [] for s in SPLITS}
    for label in range(n_classes):
        group = sorted(f for f in files if f[1] == label)
        rng.shuffle(group)
        n_val = round(len(group) * ratios[1])
        n_test = round(len(group) * ratios[2])
        out["val"] += group[:n_val]
        out["test"] += group[n_val:n_val + n_test]
        out["train"] += group[n_val + n_test:]
    for s in SPLITS:
        if ratios[SPLITS.index(s)] > 0 and not out[s]:
            raise CxrError(f"too few images to make a {s} split (seed {seed}); add images or give "
                           f"train/val/test folders")
    return {s: tuple(sorted(v)) for s, v in out.items()}


@dataclass
class Loaded:
    """Decoded images of one split: x uint8 (N, 224, 224, 3), y int64 (N,), the kept paths, the skipped ones."""
    x: np.ndarray
    y: np.ndarray
    paths: list[Path]
    skipped: list[str] = field(default_factory=list)
    pixel_hashes: list[str] = field(default_factory=list)


def load_split(ds: Dataset, split: str, skip_bad: bool = False, limit: int | None = None,
               progress: Callable[[int], None] | None = None) -> Loaded:
    """Decode a split into one array (small sets; `index_split` streams). A corrupt image raises CxrError
    naming it, unless skip_bad (then it is counted)."""
    items = _items(ds, split, limit)
    xs, ys, paths, skipped, hashes = [], [], [], [], []
    for path, label in items:
        try:
            img = load_image(path)
        except CxrError as exc:
            _bad(exc, skip_bad)
            skipped.append(str(path))
        else:
            xs.append(img)
            ys.append(label)
            paths.append(path)
            hashes.append(hashlib.sha1(img.tobytes()).hexdigest())
        if progress:
            progress(1)
    if not xs:
        raise _none_readable(ds, split)
    return Loaded(np.stack(xs), np.array(ys, dtype=np.int64), paths, skipped, hashes)


@dataclass
class Split:
    """One split checked image by image, no pixels kept: the readable files, labels (and pixel hashes); the
    skipped files. `stream()` decodes the readable files again, in batches."""
    paths: list[Path]
    y: np.ndarray
    skipped: list[str] = field(default_factory=list)
    pixel_hashes: list[str] = field(default_factory=list)

    def stream(self, batch_size: int = 32) -> ImageStream:
        return ImageStream(self.paths, batch_size)


OnImage = Callable[[str, Path, int, np.ndarray], None]


def index_split(ds: Dataset, split: str, skip_bad: bool = False, progress: Callable[[int], None] | None = None,
                on_image: OnImage | None = None, limit: int | None = None, hash_pixels: bool = True) -> Split:
    """load_split without the array: every image decoded once (a thread pool, edge/data/stream.py), handed to
    `on_image(split, path, label, image)` in file order, then dropped. The same items, skips and errors as
    load_split; memory: the decodes in flight, and per kept image its path, label (and sha1 pixel hash)."""
    items = _items(ds, split, limit)
    paths, ys, skipped, hashes = [], [], [], []
    for (path, label), (_, img) in zip(items, decode_each([p for p, _ in items])):
        if isinstance(img, CxrError):
            _bad(img, skip_bad)
            skipped.append(str(path))
        else:
            paths.append(path)
            ys.append(label)
            if hash_pixels:
                hashes.append(hashlib.sha1(img.tobytes()).hexdigest())
            if on_image:
                on_image(split, path, label, img)
        if progress:
            progress(1)
    if not paths:
        raise _none_readable(ds, split)
    return Split(paths, np.array(ys, dtype=np.int64), skipped, hashes)


def _items(ds: Dataset, split: str, limit: int | None) -> list[tuple[Path, int]]:
    items = list(ds._get(split))
    return first_per_class(items, limit) if limit is not None else items


def _bad(exc: CxrError, skip_bad: bool) -> None:
    """An unreadable image: the one-line error naming it, unless --skip-bad (then the caller counts it)."""
    if not skip_bad:
        raise CxrError(f"{exc} (use --skip-bad to skip such files)") from None


def _none_readable(ds: Dataset, split: str) -> CxrError:
    return CxrError(f"--data {ds.root}: no readable images in the {split} split")


def first_per_class(items, limit: int):
    """A stratified, deterministic subset of at most `limit` items (round-robin over classes)."""
    by_class: dict[int, list] = {}
    for it in items:
        by_class.setdefault(it[1], []).append(it)
    out, i = [], 0
    while len(out) < min(limit, len(items)):
        for label in sorted(by_class):
            if i < len(by_class[label]) and len(out) < limit:
                out.append(by_class[label][i])
        i += 1
    return out


def count_leaks(loaded: dict[str, Loaded] | dict[str, Split]) -> dict[str, int]:
    """Images whose decoded pixels appear in two splits: {'train/val': n, ...}."""
    out = {}
    names = list(loaded)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            n = len(set(loaded[a].pixel_hashes) & set(loaded[b].pixel_hashes))
            if n:
                out[f"{a}/{b}"] = n
    return out
