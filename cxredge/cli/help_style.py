"""How `--help` shows options: flags as flags. TF-free.

Typer's rich help prints a type after every option, so an on/off flag reads `--json <bool>` as if it took a
value. Here a flag (`--json`, `--strict`, `--help`, `--int8-aware/--no-int8-aware`) shows no type.
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
