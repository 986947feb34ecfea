"""Calibration sets as data: a stratified, seeded sample of the train split, saved as a manifest.

A manifest is a text file. Header lines start with '#':

    # cxredge-calibration/1
    # dataset: /abs/path/to/data
    # dataset_sha256: <Dataset.fingerprint() or unknown>
    # seed: 0
    # size: 200
    # classes: COVID,Normal,Viral_Pneumonia,Bacterial_Pneumonia

then one `relative/path.png<TAB>sha256-of-the-file-bytes` per line, paths relative to the dataset
root, sorted. `--calibration FILE` rebuilds the same image set from it (and checks every hash), so the
same manifest and the same model give the same .tflite bytes.

Sampling: per class, round(N * class share) images (largest remainders get the leftovers), chosen by
`random.Random(seed)` from the sorted train list of that class. Never val or test.
TF-free.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxredge.edge.data.dataset import Dataset
from cxredge.edge.data.images import load_image
from cxredge.errors import CxrError
from cxredge.formats import CALIBRATION_FORMAT
from cxredge.io import sha256_file, write_text

DEFAULT_SIZE = 200  # `cxredge quantize --calibration-size` (and what `train --int8-aware` calibrates with)
DEFAULT_SEED = 0    # `cxredge quantize --seed`
HEADER_KEYS = ("dataset", "dataset_sha256", "seed", "size", "classes")


@dataclass(frozen=True)
class Manifest:
    dataset: str
    dataset_sha256: str
    seed: int
    classes: tuple[str, ...]
    entries: tuple[tuple[str, str], ...]  # (relative posix path, sha256 of the file)

    @property
    def size(self) -> int:
        return len(self.entries)

    @property
    def name(self) -> str:
        return f"train_n{self.size}_seed{self.seed}"

    def text(self) -> str:
        lines = [f"# {CALIBRATION_FORMAT}", f"# dataset: {self.dataset}", f"# dataset_sha256: {self.dataset_sha256}",
                 f"# seed: {self.seed}", f"# size: {self.size}", f"# classes: {','.join(self.classes)}"]
        lines += [f"{rel}\t{digest}" for rel, digest in self.entries]
        return "\n".join(lines) + "\n"

    def save(self, path: str | Path) -> Path:
        return write_text(path, self.text())

    def sha256(self) -> str:
        return hashlib.sha256(self.text().encode("utf-8")).hexdigest()


def draw(ds: Dataset, size: int, seed: int, dataset_sha256: str = "unknown") -> Manifest:
    """A stratified, seeded sample of `size` train images of `ds`."""
    train = list(ds.splits["train"])
    if size < 1:
        raise CxrError(f"--calibration-size {size}: must be >= 1")
    if size > len(train):
        raise CxrError(f"--calibration-size {size}: larger than the train split ({len(train)} images in {ds.root})")
    by_class = {c: sorted(p for p, y in train if y == c) for c in range(len(ds.classes))}
    quotas = _quotas({c: len(v) for c, v in by_class.items()}, size)
    rng = random.Random(seed)
    chosen: list[Path] = []
    for c in sorted(by_class):
        group = list(by_class[c])
        rng.shuffle(group)
        chosen += group[:quotas[c]]
    entries = tuple(sorted((p.relative_to(ds.root).as_posix(), sha256_file(p)) for p in chosen))
    return Manifest(str(ds.root), dataset_sha256, seed, tuple(ds.classes), entries)


def _quotas(counts: dict[int, int], size: int) -> dict[int, int]:
    """Largest-remainder allocation of `size` over classes, proportional to their counts."""
    total = sum(counts.values())
    exact = {c: size * n / total for c, n in counts.items()}
    quotas = {c: int(v) for c, v in exact.items()}
    left = size - sum(quotas.values())
    for c in sorted(counts, key=lambda c: (-(exact[c] - quotas[c]), c))[:left]:
        quotas[c] += 1
    return quotas


def read_manifest(path: str | Path) -> Manifest:
    """Parse a manifest file; a malformed one is a one-line CxrError naming it."""
    path = Path(path)
    if not path.is_file():
        raise CxrError(f"--calibration {path}: file not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise CxrError(f"--calibration {path}: not a text manifest") from None
    header: dict[str, str] = {}
    entries: list[tuple[str, str]] = []
    for i, line in enumerate(lines, 1):
        if line.startswith("#"):
            key, sep, value = line[1:].strip().partition(":")
            if sep:
                header[key.strip()] = value.strip()
        elif line.strip():
            rel, sep, digest = line.partition("\t")
            if not sep or len(digest.strip()) != 64:
                raise CxrError(f"--calibration {path}: line {i} is not 'relative/path<TAB>sha256'")
            entries.append((rel.strip(), digest.strip()))
    missing = [k for k in HEADER_KEYS if k not in header]
    if missing:
        raise CxrError(f"--calibration {path}: header lacks {', '.join(missing)}")
    if not entries:
        raise CxrError(f"--calibration {path}: lists no images")
    try:
        seed, size = int(header["seed"]), int(header["size"])
    except ValueError:
        raise CxrError(f"--calibration {path}: seed and size must be integers") from None
    if size != len(entries):
        raise CxrError(f"--calibration {path}: header says size {size} but lists {len(entries)} images")
    classes = tuple(c for c in header["classes"].split(",") if c)
    return Manifest(header["dataset"], header["dataset_sha256"], seed, classes, tuple(entries))


def check_classes(manifest: Manifest, classes: list[str] | tuple[str, ...], source: str | Path) -> None:
    if tuple(classes) != manifest.classes:
        raise CxrError(f"--calibration {source}: classes {','.join(manifest.classes)} do not match the run's "
                       f"{','.join(classes)}")


def load_images(manifest: Manifest, root: str | Path, source: str | Path, progress=None) -> np.ndarray:
    """Decode every listed image under `root`, checking each file's sha256 first."""
    root = Path(root)
    out = np.empty((manifest.size, 224, 224, 3), dtype=np.uint8)
    for i, (rel, digest) in enumerate(manifest.entries):
        path = root / rel
        if not path.is_file():
            raise CxrError(f"--calibration {source}: listed image {path} is missing")
        if sha256_file(path) != digest:
            raise CxrError(f"--calibration {source}: listed image {path} has changed (sha256 mismatch)")
        out[i] = load_image(path)
        if progress:
            progress(1)
    return out


def input_range_anchor(x: np.ndarray) -> np.ndarray | None:
    """The uint8 input must calibrate to exactly [0, 255] (scale 1.0, zero point 0).

    Real X-rays nearly always hold both a 0 and a 255 pixel. When the set lacks one, we return one
    extra calibration image: a copy of the first image with pixel (0, 0) set to 0 and pixel (0, 1) set
    to 255, so the input range is exact while every other layer sees (almost) real data. None when the
    set already spans [0, 255].
    """
    lo, hi = int(x.min()), int(x.max())
    if lo == 0 and hi == 255:
        return None
    anchor = x[0].copy()
    anchor[0, 0, :] = 0
    anchor[0, 1, :] = 255
    return anchor
