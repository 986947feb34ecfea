"""What every command shares: the console, the error handler, list options. TF-free."""
from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from typing import Callable, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from cxredge.errors import CxrError
from cxredge.io import shown

console = Console(stderr=False)
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable)


def handle_errors(fn: F) -> F:
    """Turn a CxrError, or an OSError (a folder that cannot be made, a full disk, a read-only file system),
    into one red line on stderr and exit code 1; Ctrl-C into exit 130.

    The message is printed as text, not rich markup: `pip install 'cxredge[train]'` keeps its `[train]`.
    Anything else is a bug in cxredge and keeps its traceback (docs/security.md): never swallowed.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CxrError as exc:
            fail(str(exc))
        except OSError as exc:
            fail(os_error_line(exc))
        except KeyboardInterrupt:
            err_console.print("[bold red]interrupted[/]: artifacts written so far are complete; "
                              "nothing partial was left")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def fail(message: str) -> None:
    """One line whatever the message holds: a name's newline or undecodable bytes are shown as \\xNN."""
    err_console.print(f"[bold red]error:[/] {escape(shown(message))}", highlight=False, soft_wrap=True)
    raise typer.Exit(1) from None


def os_error_line(exc: OSError) -> str:
    """'PATH: reason' (both paths of a rename or copy), from what the OS said; one line."""
    reason = shown(exc.strerror or str(exc) or type(exc).__name__)
    where = [shown(f) for f in (exc.filename, exc.filename2) if f is not None]
    return f"{' -> '.join(where)}: {reason}" if where else f"{reason} ({type(exc).__name__})"


def check_out_dir(path: Path | None, option: str = "--out") -> None:
    """Fail before any work when `path` cannot be (or become) a folder this process can write to."""
    if path is None:
        return
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise CxrError(f"{option} {shown(path)}: exists and is not a folder")
        _probe(path, path, option)
        return
    parent = _existing_parent(path)
    if not parent.is_dir():
        raise CxrError(f"{option} {shown(path)}: {shown(parent)} is a file, not a folder")
    _probe(parent, path, option)


def check_out_file(path: Path | None, option: str = "--out") -> None:
    """The same for a file to write: not a folder, and its folder writable."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise CxrError(f"{option} {shown(path)}: is a folder, not a file")
    check_out_dir(path.parent if str(path.parent) else Path("."), option)


def _existing_parent(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _probe(folder: Path, path: Path, option: str) -> None:
    """Make and remove an empty folder there: the only test that /proc, a read-only mount or missing
    permissions cannot fool (os.access can)."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".cxredge-probe-", dir=folder))
    except OSError as exc:
        where = "" if folder == path else f" (in {shown(folder)})"
        raise CxrError(f"{option} {shown(path)}: cannot write there{where}: {exc.strerror or exc}") from None


def split_list(value: str, option: str, allowed: tuple[str, ...] | None = None) -> list[str]:
    """'a,b, c' -> ['a', 'b', 'c'], checked against `allowed` when given."""
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise CxrError(f"{option}: empty value")
    if allowed is not None:
        bad = [v for v in items if v not in allowed]
        if bad:
            raise CxrError(f"{option} {','.join(bad)}: expected one of {', '.join(allowed)}")
    return items


def split_ints(value: str, option: str) -> list[int]:
    out = []
    for v in split_list(value, option):
        try:
            n = int(v)
        except ValueError:
            raise CxrError(f"{option} {v}: not an integer") from None
        if n < 1:
            raise CxrError(f"{option} {v}: must be >= 1")
        out.append(n)
    return out
