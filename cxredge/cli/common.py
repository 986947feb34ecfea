"""What every command shares: the console, the error handler, list options. TF-free."""
from __future__ import annotations

import functools
from typing import Callable, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from cxredge.errors import CxrError

console = Console(stderr=False)
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable)


def handle_errors(fn: F) -> F:
    """Turn a CxrError into one red line on stderr and exit code 1 (no traceback).

    The message is printed as text, not rich markup: `pip install 'cxredge[train]'` keeps its `[train]`.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CxrError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err_console.print("[bold red]interrupted[/]: artifacts written so far are complete; nothing partial was left")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


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
