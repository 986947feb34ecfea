"""Run small linear algebra on one BLAS thread. TF-free, stdlib + ctypes.

The probe's matrices are small (~100 x 100 Gram matrices, a few thousand rows). OpenBLAS still
splits such products over all cores, and when the cores are busy (another job, a shared machine) its
threads spin-wait for each other: in a one-off check the sample's probe took 0.8 s on one thread and
12 s on two while another training job ran (2-core Xeon). This sets the thread count of the OpenBLAS
that numpy loaded to 1 for the duration, through its own `*_set_num_threads` entry point, and puts it
back afterwards. It does nothing where no OpenBLAS is found (other BLAS, no /proc): results never
depend on it.
"""
from __future__ import annotations

import contextlib
import ctypes
from pathlib import Path
from typing import Iterator

_PREFIXES = ("openblas", "scipy_openblas")
_SUFFIXES = ("", "64_")


def _openblas() -> list[tuple[object, object]]:
    """(get, set) thread-count functions of every OpenBLAS mapped into this process."""
    maps = Path("/proc/self/maps")
    if not maps.is_file():
        return []
    libs = sorted({line.split()[-1] for line in maps.read_text().splitlines()
                   if "openblas" in line.lower() and ".so" in line and line.split()[-1].startswith("/")})
    found = []
    for lib in libs:
        try:
            handle = ctypes.CDLL(lib)
        except OSError:
            continue
        for prefix in _PREFIXES:
            for suffix in _SUFFIXES:
                get = getattr(handle, f"{prefix}_get_num_threads{suffix}", None)
                put = getattr(handle, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    found.append((get, put))
    return found


def thread_counts() -> list[int]:
    return [int(get()) for get, _ in _openblas()]


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    libs = _openblas()
    before = [int(get()) for get, _ in libs]
    for _, put in libs:
        put(1)
    try:
        yield
    finally:
        for (_, put), n in zip(libs, before):
            put(n)
