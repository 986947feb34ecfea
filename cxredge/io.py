"""Atomic artifact writes and small file helpers. TF-free.

Every artifact is written to a temporary file in the same folder and renamed into place, so a failed
or interrupted command never leaves a half-written file or destroys the previous one. The file gets the
mode an ordinary open() would give it (0666 & ~umask, or the mode of the file it replaces), not
mkstemp's 0600. A temporary that a SIGKILL left behind (`.NAME.XXXXXXXX.tmp` beside NAME, or a
`.cxredge-*.tmp` scratch folder) is removed by the next write there once it is an hour old; only names
of exactly that pattern, owned by this user, are touched (docs/security.md).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from cxredge.errors import CxrError

STALE_S = 3600  # a temporary of ours untouched this long belongs to a run that died
TMP_CHARS = "[a-z0-9_]{8}"  # what tempfile puts between prefix and suffix
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def shown(name: Any) -> str:
    """A file name (str, bytes or path) as one printable line of valid UTF-8: bytes that are not UTF-8
    (kept by Python as lone surrogates) become `\\xNN`, control characters (a newline) `\\xNN` too."""
    s = os.fsdecode(name) if isinstance(name, (bytes, os.PathLike)) else str(name)
    try:
        s = s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no file system made (from JSON, say)
        s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    return CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", s)


def shown_tree(obj: Any) -> Any:
    """shown() applied to every string (keys too) of a JSON-like tree: what goes into a report."""
    if isinstance(obj, str):
        return shown(obj)
    if isinstance(obj, dict):
        return {shown_tree(k): shown_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [shown_tree(v) for v in obj]
    return obj


def umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux: /proc/self/status)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode(path: Path) -> int:
    """The mode open(path, 'w') would leave: an existing file keeps its own, a new one gets 0666 & ~umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~umask()


def remove_stale(folder: Path, pattern: str, max_age_s: float = STALE_S) -> list[Path]:
    """Remove entries of `folder` whose whole name matches `pattern` (a regex), untouched for `max_age_s`
    and owned by this user; files, or folders (their content with them). Links are never followed."""
    rx, now, removed = re.compile(pattern), time.time(), []
    uid = os.getuid() if hasattr(os, "getuid") else None
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not rx.fullmatch(entry.name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if now - st.st_mtime < max_age_s or (uid is not None and st.st_uid != uid):
                continue
            if stat.S_ISDIR(st.st_mode):
                if not _pid_alive(entry.name):
                    shutil.rmtree(entry.path)
                    removed.append(Path(entry.path))
            elif stat.S_ISREG(st.st_mode):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def _pid_alive(name: str) -> bool:
    """A scratch folder's name carries the pid that made it: a live process keeps its folder, however old."""
    m = re.search(r"-(\d+)-", name)
    if not m or not hasattr(os, "kill"):
        return False
    try:
        os.kill(int(m.group(1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _tmp_pattern(name: str, suffix: str) -> str:
    return re.escape(f".{name}.") + TMP_CHARS + re.escape(suffix)


def _write_error(path: Path, tmp: Path, exc: OSError) -> Exception:
    """An OSError about our own temporary (a full disk, a read-only folder) names the artifact instead."""
    if exc.filename not in (None, str(tmp), os.fspath(tmp)):
        return exc
    reason = exc.strerror or str(exc) or type(exc).__name__
    return CxrError(f"{path}: cannot write ({reason})")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path`, on error it is removed.

    `suffix` ends the temporary's name (a writer that insists on an extension: `.keras`)."""
    path = Path(path)
    if path.is_dir():
        raise CxrError(f"{path}: is a folder, not a file")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent, _tmp_pattern(path.name, suffix))
    mode = new_file_mode(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as exc:
        raise CxrError(f"{path}: cannot write ({exc.strerror or exc})") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
            os.chmod(tmp_path, mode)  # the writer may have replaced the file: set the mode last
            os.replace(tmp_path, path)
        except OSError as exc:
            err = _write_error(path, tmp_path, exc)
            if err is exc:
                raise
            raise err from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_files(contents: dict[str | os.PathLike, bytes | str]) -> list[Path]:
    """Write several artifacts as one unit: every temporary is written first, then all are renamed into
    place. A failure while writing (an encoding error, a full disk) replaces none of them."""
    with contextlib.ExitStack() as stack:
        staged = []
        for path, data in contents.items():
            tmp = stack.enter_context(_staged(Path(path)))
            try:
                if isinstance(data, str):
                    data = data.encode("utf-8")
                tmp.write_bytes(data)
            except OSError as exc:
                err = _write_error(Path(path), tmp, exc)
                if err is exc:
                    raise
                raise err from None
            staged.append((tmp, Path(path)))
        for tmp, path in staged:
            os.replace(tmp, path)
    return [p for _, p in staged]


@contextlib.contextmanager
def _staged(path: Path) -> Iterator[Path]:
    """atomic_path's temporary without its rename: the caller renames; whatever is left is removed."""
    if path.is_dir():
        raise CxrError(f"{path}: is a folder, not a file")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent, _tmp_pattern(path.name, ".tmp"))
    mode = new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    if hasattr(os, "fchmod"):
        os.fchmod(fd, mode)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def scratch_dir(parent: str | os.PathLike, what: str = "bundle") -> Iterator[Path]:
    """A private temporary folder `.cxredge-WHAT-PID-XXXXXXXX.tmp` under `parent` (the output folder, so a
    SIGKILLed run's leftovers sit with its results); removed on exit. Stale ones of dead runs are removed
    first."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale(parent, re.escape(f".cxredge-{what}-") + r"\d+-" + TMP_CHARS + re.escape(".tmp"))
    tmp = Path(tempfile.mkdtemp(prefix=f".cxredge-{what}-{os.getpid()}-", suffix=".tmp", dir=parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json_text(obj))


def json_text(obj: Any) -> str:
    """The text write_json writes (indented, numpy values and paths converted)."""
    return json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise CxrError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, 5000-digit ints, nesting
        raise CxrError(f"{path}: not valid JSON ({type(exc).__name__}: {str(exc)[:200]})") from None


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays, Paths: without importing numpy here.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
