"""The audit end to end: read every image once, then file facts, duplicates, probe, warnings -> one
dict (audit.json). Two ways in: from the files (`cxredge audit`) or from the decoded 224x224 inputs
`cxredge train` already holds (its fast pre-training check). TF-free.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import PIL

from cxredge import __version__
from cxredge.edge.audit import checks
from cxredge.edge.audit import facts as F
from cxredge.edge.audit import features as FE
from cxredge.edge.audit.duplicates import NEAR_THRESHOLD, find_duplicates
from cxredge.edge.audit.probe import ProbeSettings, run_probe
from cxredge.edge.data.dataset import Dataset, Loaded
from cxredge.errors import CxrError
from cxredge.formats import AUDIT_FORMAT
from cxredge.io import shown_tree
from cxredge.vocab import SPLITS


@dataclass(frozen=True)
class AuditSettings:
    near_threshold: int = NEAR_THRESHOLD  # pHash Hamming distance (of 256 bits) for a near duplicate
    probe: ProbeSettings = ProbeSettings()
    skip_bad: bool = False

    def to_dict(self) -> dict:
        return {"near_threshold": self.near_threshold, "probe": self.probe.to_dict(), "skip_bad": self.skip_bad}


@dataclass
class Collected:
    """One row per image read: its name (path under the dataset root), split, label, facts, cues."""
    source: str
    names: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    facts: list[F.FileFacts] = field(default_factory=list)
    cues: dict[str, list[np.ndarray]] = field(default_factory=lambda: {g: [] for g in FE.GROUPS})
    hashes: list[np.ndarray] = field(default_factory=list)
    pixels: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, name: str, split: str, label: int, facts: F.FileFacts, native: np.ndarray, work: np.ndarray) -> None:
        self.names.append(name)
        self.splits.append(split)
        self.labels.append(label)
        self.facts.append(facts)
        for g, v in FE.probe_features(native, work.astype(np.float32)).items():
            self.cues[g].append(v)
        self.hashes.append(FE.phash(work))
        self.pixels.append(FE.pixel_hash(native))


def dataset_items(ds: Dataset) -> list[tuple[str, Path, int]]:
    return [(s, p, y) for s in SPLITS for p, y in ds.splits.get(s, ())]


def collect_files(ds: Dataset, skip_bad: bool = False, progress: Callable[[int], None] | None = None) -> Collected:
    """Decode every file of the dataset (original pixels, not only the 224x224 input)."""
    t0 = time.perf_counter()
    out = Collected("files")
    for split, path, label in dataset_items(ds):
        try:
            facts, native, work = F.read_image(path)
        except CxrError as exc:
            if not skip_bad:
                raise CxrError(f"{exc} (use --skip-bad to list such files and audit the rest)") from None
            out.unreadable.append(rel_name(ds, path))
        else:
            out.add(rel_name(ds, path), split, label, facts, native, work)
        if progress:
            progress(1)
    out.seconds = time.perf_counter() - t0
    return out


def collect_loaded(ds: Dataset, loaded: dict[str, Loaded]) -> Collected:
    """The images `cxredge train` decoded (uint8 224x224x3): no second decode; headers are read for the facts."""
    t0 = time.perf_counter()
    out = Collected("decoded 224x224 training inputs (cxredge train)")
    for split, part in loaded.items():
        for path, label, rgb in zip(part.paths, part.y.tolist(), part.x):
            img = luma(rgb)
            out.add(rel_name(ds, path), split, int(label), F.read_header(path), img, img)
        out.unreadable += [rel_name(ds, Path(p)) for p in part.skipped]
    out.seconds = time.perf_counter() - t0
    return out


def luma(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 -> L exactly as Pillow converts (ITU-R 601-2, fixed point)."""
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
        return rgb[..., 0]
    r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def rel_name(ds: Dataset, path: Path) -> str:
    return Path(path).relative_to(ds.root).as_posix()


def audit(ds: Dataset, rows: Collected, settings: AuditSettings = AuditSettings()) -> dict:
    """audit.json, from the rows collected (either way in). Every string in it is displayable (io.shown: a
    file name's bytes that are not UTF-8 as \\xNN), so json, md, html and the terminal can all carry it;
    writers.write_outputs maps names back to the files for the thumbnails."""
    if not rows.names:
        raise CxrError(f"--data {ds.root}: no readable images to audit")
    t = {"read": round(rows.seconds, 2)}
    labels = np.array(rows.labels, dtype=np.int64)
    t0 = time.perf_counter()
    dups = find_duplicates(rows.pixels, np.stack(rows.hashes), rows.names, labels, rows.splits, settings.near_threshold)
    near_pairs = dups.pop("near_pairs")
    t["duplicates"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    probe = run_probe({g: np.stack(v) for g, v in rows.cues.items()}, labels, ds.classes, settings.probe)
    t["probe"] = round(time.perf_counter() - t0, 2)
    cats = [F.categories(f) for f in rows.facts]
    format_table, format_warnings = checks.format_cues(cats, labels, ds.classes, settings.probe.min_lift,
                                                       settings.probe.z_min)
    where = {n: (s, ds.classes[y]) for n, s, y in zip(rows.names, rows.splits, rows.labels)}
    warnings = checks.shortcut_warnings(probe) + format_warnings + checks.duplicate_warnings(dups, where)
    return shown_tree({
        "format": AUDIT_FORMAT, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "data": {"path": str(Path(ds.root).resolve()), "layout": ds.layout, "split_seed": ds.seed},
        "source": rows.source, "settings": settings.to_dict(),
        "classes": list(ds.classes), "counts": _counts(rows, ds), "formats": _formats(rows, ds),
        "files": _files(rows, ds), "format_cues": format_table,
        "duplicates": dups,
        "duplicate_search": {"hash": f"DCT pHash, {FE.HASH_BITS} bits", "threshold": settings.near_threshold,
                             "pairs_compared": len(rows.names) * (len(rows.names) - 1) // 2, "near_pairs": near_pairs},
        "probe": probe, "warnings": warnings,
        "unreadable": rows.unreadable,
        "thumbnails": _thumbnails(rows, ds),
        "seconds": t, "versions": {"cxredge": __version__, "numpy": np.__version__, "pillow": PIL.__version__},
    })


def _counts(rows: Collected, ds: Dataset) -> dict:
    out = {s: {c: 0 for c in ds.classes} for s in dict.fromkeys(rows.splits)}
    for s, y in zip(rows.splits, rows.labels):
        out[s][ds.classes[y]] += 1
    return out


def _by_class(rows: Collected, ds: Dataset, split: str | None = None) -> dict[str, list[F.FileFacts]]:
    out: dict[str, list[F.FileFacts]] = {c: [] for c in ds.classes}
    for s, y, f in zip(rows.splits, rows.labels, rows.facts):
        if split is None or s == split:
            out[ds.classes[y]].append(f)
    return out


def _formats(rows: Collected, ds: Dataset) -> dict:
    return {c: F.summarise(fs).get("formats", {}) for c, fs in _by_class(rows, ds).items()}


def _files(rows: Collected, ds: Dataset) -> dict:
    out = {s: {c: F.summarise(fs) for c, fs in _by_class(rows, ds, s).items()} for s in dict.fromkeys(rows.splits)}
    out["all"] = {c: F.summarise(fs) for c, fs in _by_class(rows, ds).items()}
    return out


def _thumbnails(rows: Collected, ds: Dataset, per_class: int = 6) -> dict[str, list[str]]:
    """A seeded, spread-out choice of images per class for the HTML page."""
    rng = np.random.default_rng(0)
    out = {}
    for label, c in enumerate(ds.classes):
        names = [n for n, y in zip(rows.names, rows.labels) if y == label]
        pick = sorted(rng.choice(len(names), min(per_class, len(names)), replace=False)) if names else []
        out[c] = [names[i] for i in pick]
    return out
