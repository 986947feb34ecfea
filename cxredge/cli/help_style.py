"""How `--help` shows options: flags as flags. TF-free.

Typer's rich help prints a type after every option, so an on/off flag reads `--json <bool>` as if it took a
value. Here a flag (`--json`, `--strict`, `--help`, `--int8-aware/--no-int8-aware`) shows no type, and a
long option name folds onto a second line at 80 columns instead of ending in "…".
"""
from __future__ import annotations


def flags_without_type() -> None:
    from typer import core

    option = getattr(core, "TyperOption", None)
    shown = getattr(option, "display_type_rich", None)
    if shown is None or getattr(shown, "_cxredge", False):
        return

    def display_type_rich(self, ctx):
        if getattr(self, "is_flag", False) and self.metavar is None:
            return None
        return shown(self, ctx)

    display_type_rich._cxredge = True
    option.display_type_rich = display_type_rich


def fold_not_cut() -> None:
    """Help tables fold a long option name (`--bias-correction-images`) at 80 columns instead of cutting it."""
    from rich.table import Table
    from typer import rich_utils

    if getattr(rich_utils.Table, "_cxredge", False):
        return

    class FoldingTable(Table):
        _cxredge = True

        def add_row(self, *renderables, **kwargs):
            super().add_row(*renderables, **kwargs)
            for column in self.columns:
                column.overflow = "fold"

    rich_utils.Table = FoldingTable
