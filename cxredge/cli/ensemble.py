"""cxredge ensemble: average the logits of trained models into one model (<run>/ensemble/)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from cxredge.cli.common import console, handle_errors, split_list
from cxredge.errors import CxrError
from cxredge.paths import DEFAULT_RUN


def parse_weights(value: str | None) -> list[float] | None:
    if value is None:
        return None
    out = []
    for item in split_list(value, "--weights"):
        try:
            w = float(item)
        except ValueError:
            raise CxrError(f"--weights {item}: not a number") from None
        if not 0 <= w < float("inf"):  # also refuses nan
            raise CxrError(f"--weights {item}: expected a finite number >= 0")
        out.append(w)
    return out


@handle_errors
def ensemble(
    run: Path = typer.Option(DEFAULT_RUN, "--run",
                             help="Run directory written by cxredge train; the ensemble goes to <run>/ensemble/."),
    members: str = typer.Option(..., "--members",
                                help="Comma list: variants of this run (two_conv,finetune) and/or other runs' variant "
                                     "folders (runs/seed1/finetune). Same classes required."),
    weights: Optional[str] = typer.Option(None, "--weights",
                                          help="Comma list of member weights (default: equal); normalised to sum 1."),
) -> None:
    """Average the logits of trained models of one dataset into one model that quantizes and benches as a variant."""
    specs = split_list(members, "--members")
    w = parse_weights(weights)
    from cxredge.train.ensemble_run import ensemble_run

    metrics = ensemble_run(run, specs, w, console)
    console.print(results_table(metrics))
    console.print(f"wrote {run / 'ensemble'} (model.keras, metrics.json, confusion.png); next: "
                  f"cxredge quantize --run {run} --variant ensemble")


def results_table(m: dict) -> Table:
    table = Table(title="cxredge ensemble: each member and the ensemble on the same images",
                  caption="pair = Bacterial-vs-Viral pair accuracy (when the classes have that pair)")
    for col in ("model", "weight", "val acc", "val F1", "test acc", "test F1", "test pair"):
        table.add_column(col, justify="left" if col == "model" else "right", no_wrap=True)
    weight = {r["label"]: r["weight"] for r in m["ensemble"]["members"]}

    def pair(v):
        return "-" if v is None else f"{v:.3f}"
    for label, s in m["members"].items():
        table.add_row(label, f"{weight[label]:.2f}", f"{s['val']['accuracy']:.3f}", f"{s['val']['macro_f1']:.3f}",
                      f"{s['test']['accuracy']:.3f}", f"{s['test']['macro_f1']:.3f}", pair(s["test"]["pair_accuracy"]))
    table.add_row("[bold]ensemble[/]", "1.00", f"{m['val']['accuracy']:.3f}", f"{m['val']['macro_f1']:.3f}",
                  f"{m['accuracy']:.3f}", f"{m['macro_f1']:.3f}", pair(m["pair_accuracy"]))
    return table
