"""The feature cache on disk: one .npy file per (split, view, cut), memory-mapped for reading. TF-free.

Layout: CACHE_DIR/<key>/ where <key> is a digest of what decides the features (backbone weights file,
alpha, dataset fingerprint, storage dtype, versions; key.json says it in words), and inside it
`<split>.<view>.<cut>.npy` with a `.json` progress marker beside it. Rows are written with pwrite in
file order; every few batches the data is fsynced and then the marker (rows done) is replaced
atomically, so an interrupted pass leaves a valid prefix that the next pass resumes from, and a
second `train` (another variant on the same cut, another seed, finetune's phase 1) reads the files
instead of running the backbone.

Reading (`Rows`) maps the file read-only and hands out float32 copies of the rows asked for; it drops
the mapped pages it has read every few MB (madvise DONTNEED), so a pass over a cache bigger than
memory leaves the data in the OS page cache, not in the process's resident set.
"""
from __future__ import annotations

import hashlib
import json
import mmap
import os
from pathlib import Path

import numpy as np

from cxredge.errors import CxrError
from cxredge.io import write_json

FORMAT = "cxredge-feature-cache/1"
DROP_BYTES = 64 << 20  # Rows: madvise(DONTNEED) after this many bytes read


def digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def float16_keeps(a: np.ndarray, tolerance: float = 1e-3) -> bool:
    """Whether float16 stores `a` to within `tolerance` of its largest magnitude (no overflow, no
    values lost to underflow)."""
    a = np.asarray(a, np.float32)
    top = float(np.abs(a).max()) if a.size else 0.0
    if not np.isfinite(top) or top > 60000.0 or top == 0.0:
        return top == 0.0
    return float(np.abs(a.astype(np.float16).astype(np.float32) - a).max()) <= tolerance * top


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class FeatureStore:
    def __init__(self, root: str | Path, key: dict):
        self.key = {"format": FORMAT, **key}
        self.dir = Path(root) / digest(self.key)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            if not (self.dir / "key.json").exists():
                write_json(self.dir / "key.json", self.key)
        except OSError as exc:
            raise CxrError(f"--cache-dir {root}: cannot write the feature cache there "
                           f"({exc.strerror or exc})") from None

    def meta(self, name: str) -> dict:
        try:
            return json.loads((self.dir / f"{name}.meta.json").read_text())
        except (OSError, ValueError):
            return {}

    def set_meta(self, name: str, value: dict) -> None:
        write_json(self.dir / f"{name}.meta.json", value)

    def path(self, name: str) -> Path:
        return self.dir / f"{name}.npy"

    def done(self, name: str, shape: tuple[int, ...]) -> int:
        """Rows of `name` already on disk (0 when absent or of another shape)."""
        marker = self.dir / f"{name}.json"
        try:
            m = json.loads(marker.read_text())
        except (OSError, ValueError):
            return 0
        if tuple(m.get("shape", ())) != tuple(shape) or not self.path(name).is_file():
            return 0
        return int(m.get("rows", 0))

    def writer(self, name: str, shape: tuple[int, ...], dtype: str) -> "Writer":
        return Writer(self, name, shape, np.dtype(dtype))

    def rows(self, name: str) -> "Rows":
        return Rows(self.path(name))

    def disk_bytes(self) -> int:
        return sum(p.stat().st_blocks * 512 for p in self.dir.iterdir() if p.is_file())


class Writer:
    """Rows of one array, written in order from the first row not yet on disk."""

    def __init__(self, store: FeatureStore, name: str, shape: tuple[int, ...], dtype: np.dtype):
        self.store, self.name, self.shape, self.dtype = store, name, tuple(shape), dtype
        path = store.path(name)
        self.rows_done = store.done(name, self.shape)
        if not self.rows_done:
            with open(path, "wb") as f:
                np.lib.format.write_array_header_2_0(f, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                         "fortran_order": False, "shape": self.shape})
                self.offset = f.tell()
                f.truncate(self.offset + int(np.prod(self.shape)) * dtype.itemsize)
            self._mark()
        else:
            self.offset = _header(path)[2]
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * dtype.itemsize
        self.fd = os.open(path, os.O_WRONLY)
        self.written = self.rows_done

    def write(self, start: int, block: np.ndarray) -> None:
        data = np.ascontiguousarray(block, dtype=self.dtype).tobytes()
        os.pwrite(self.fd, data, self.offset + start * self.row_bytes)
        self.written = max(self.written, start + len(block))

    def commit(self) -> None:
        """Make the rows written so far durable, then move the marker (the order is what makes resume safe)."""
        os.fsync(self.fd)
        self.rows_done = self.written
        self._mark()

    def close(self) -> None:
        os.close(self.fd)

    def _mark(self) -> None:
        write_json(self.store.dir / f"{self.name}.json",
                   {"rows": self.rows_done, "shape": list(self.shape), "dtype": self.dtype.name})


def _header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
        return shape, dtype, f.tell()


class Rows:
    """A read-only memory map of one cached array; indexing returns float32 copies."""

    def __init__(self, path: Path):
        shape, dtype, offset = _header(path)
        self.path, self.shape, self.dtype = path, tuple(shape), dtype
        with open(path, "rb") as f:
            self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._arr = np.ndarray(self.shape, dtype, buffer=self._mm, offset=offset)
        self._read = 0

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx) -> np.ndarray:
        out = np.array(self._arr[idx], dtype=np.float32)
        self._read += out.size * self.dtype.itemsize
        if self._read > DROP_BYTES and hasattr(mmap, "MADV_DONTNEED"):
            self._mm.madvise(mmap.MADV_DONTNEED)
            self._read = 0
        return out
