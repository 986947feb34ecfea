"""cxredge predict (placeholder until its module lands; the owner replaces this file)."""
from __future__ import annotations

import typer

from cxredge.errors import CxrError
from cxredge.cli.common import handle_errors


@handle_errors
def predict() -> None:
    """Not implemented yet."""
    raise CxrError("cxredge predict: not implemented yet")
