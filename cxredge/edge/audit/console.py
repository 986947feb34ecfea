"""The audit on the terminal: a rich summary table and the warnings in yellow. TF-free."""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cxredge.edge.audit.features import GROUPS

HEADERS = {"borders": "borders", "histogram": "histo", "jpeg_blocks": "JPEG", "all": "all"}


def summary_table(a: dict) -> Table:
    probe = a["probe"]
    n = sum(sum(c.values()) for c in a["counts"].values())
    d = a["duplicates"]
    table = Table(title=f"cxredge audit: {n} images, {len(a['classes'])} classes",
                  caption=f"probe: {probe['cv_folds']}-fold CV accuracy from non-diagnostic cues only; "
                          f"duplicates: exact {len(d['exact'])}, near {len(d['near'])}, "
                          f"across classes {len(d['cross_class'])}, across splits {len(d['cross_split'])}")
    for col in ("pair", "n", "chance", *(HEADERS[g] for g in GROUPS + ("all",)), "flagged"):
        table.add_column(col, justify="left" if col == "pair" else "right", no_wrap=col != "pair")
    for p in probe["pairs"]:
        cells = []
        for g in GROUPS + ("all",):
            v = f"{p['accuracy_by_cue'][g]:.3f}"
            cells.append(f"[bold yellow]{v}[/]" if p["flagged"] and g == p["cue"] else v)
        table.add_row(escape(" vs ".join(p["classes"])), str(p["n"]), f"{p['chance']:.3f}", *cells,
                      "[yellow]yes[/]" if p["flagged"] else "no")
    return table


def print_warnings(console: Console, a: dict, prefix: str = "warning") -> None:
    for w in a["warnings"]:
        # class and file names are text, not rich markup: a folder named [/] must not end a style
        console.print(f"[yellow]{prefix} ({escape(w['kind'])}):[/] {escape(w['message'])}", highlight=False,
                      soft_wrap=True)
