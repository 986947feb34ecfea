"""Images decoded in batches from a file list, never a whole split in memory. TF-free.

A thread pool runs edge.images.load_image (the one decode entry point) over the files; Pillow releases
the GIL while it decodes, so the pool uses every core. At most `ahead` batches are decoded in advance
(a bounded queue), and batches come out in file order, so a pass is reproducible. train, quantize and
bench read a split this way (`dataset.index_split` checks it once, `Split.stream()` reads it again);
`ArrayImages` gives images already in memory the same interface (len, batches, head).
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from cxredge.edge.data.images import IMG_SIZE, load_image
from cxredge.errors import CxrError


def workers() -> int:
    return max(1, os.cpu_count() or 1)


def decode_paths(paths: list[Path]) -> np.ndarray:
    """The images of `paths`, decoded one after the other: uint8 (n, 224, 224, 3)."""
    out = np.empty((len(paths), IMG_SIZE, IMG_SIZE, 3), dtype=np.uint8)
    for i, p in enumerate(paths):
        out[i] = load_image(p)
    return out


def decode_batches(paths: list[Path], batch_size: int = 32, start: int = 0, ahead: int | None = None,
                   pool: ThreadPoolExecutor | None = None) -> Iterator[np.ndarray]:
    """uint8 (b, 224, 224, 3) batches of paths[start:], in order; a corrupt file raises CxrError naming it.
    Memory: at most `ahead` (default 2 per worker) decoded batches at a time."""
    ahead = ahead or 2 * workers()
    own = pool is None
    pool = pool or ThreadPoolExecutor(workers(), thread_name_prefix="cxr-decode")
    starts = iter(range(start, len(paths), batch_size))
    queue: deque = deque()
    try:
        for s in starts:
            queue.append(pool.submit(decode_paths, paths[s:s + batch_size]))
            if len(queue) >= ahead:
                break
        while queue:
            batch = queue.popleft().result()
            nxt = next(starts, None)
            if nxt is not None:
                queue.append(pool.submit(decode_paths, paths[nxt:nxt + batch_size]))
            yield batch
    finally:
        for fut in queue:
            fut.cancel()
        if own:
            pool.shutdown(wait=True, cancel_futures=True)


def _try(path: Path):
    try:
        return load_image(path)
    except CxrError as exc:
        return exc


def decode_each(paths: list[Path], ahead: int | None = None) -> Iterator[tuple[Path, np.ndarray | CxrError]]:
    """(path, image or the CxrError it raised) for each path in order, `ahead` (default 8 per worker)
    decodes in flight at most."""
    ahead = ahead or 8 * workers()
    with ThreadPoolExecutor(workers(), thread_name_prefix="cxr-decode") as pool:
        queue: deque = deque()
        it = iter(paths)
        for p in it:
            queue.append((p, pool.submit(_try, p)))
            if len(queue) >= ahead:
                break
        while queue:
            p, fut = queue.popleft()
            nxt = next(it, None)
            if nxt is not None:
                queue.append((nxt, pool.submit(_try, nxt)))
            yield p, fut.result()


@dataclass
class ImageStream:
    """A split's images as a re-iterable stream of uint8 batches (what `predict` and the val scores read)."""
    paths: list[Path]
    batch_size: int = 32

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[np.ndarray]:
        return decode_batches(self.paths, self.batch_size)

    def head(self, n: int) -> np.ndarray:
        """The first n images, decoded (a small check set)."""
        return decode_paths(self.paths[:n])


@dataclass
class ArrayImages:
    """Images already decoded in memory (N, 224, 224, 3), read like an ImageStream: one batch, the array."""
    x: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter([self.x] if len(self.x) else [])

    def head(self, n: int) -> np.ndarray:
        return self.x[:n]


def as_images(images) -> ImageStream | ArrayImages:
    """An ImageStream (or anything with len, batches and head) as it is; an array as ArrayImages."""
    return ArrayImages(images) if isinstance(images, np.ndarray) else images
