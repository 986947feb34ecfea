"""cxredge predict: the top class and the probabilities of each image, with one .tflite. TF-free."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from cxredge.cli.common import console, err_console, handle_errors
from cxredge.edge.runtime.predict import (  # noqa: F401  (the library's; re-exported for explain and tests)
    MARGIN,
    expand_images,
    identify,
    model_in_bundle,
    untrusted_reason,
)
from cxredge.errors import CxrError

JSON_HELP = ("Print one JSON object instead of a table: {model, runtime, labels, margin_threshold, ood_guard, "
             "predictions}, model naming the file that answered (variant, precision, sha256), predictions holding "
             "one entry per image (label, probabilities, margin, low_margin, in_distribution, ood).")
MARGIN_HELP = ("Mark a prediction whose top-1 minus top-2 probability is below this as a near-tie "
               "(low margin; 0 = never).")
STRICT_HELP = ("Exit 3 when no input can be trusted: every image is out of distribution, or the model has no "
               "OOD guard. Without it: a warning line and exit 0.")
EXIT_OOD = 3  # --strict and no input looks like the model's validation images


@handle_errors
def predict(
    model: Path = typer.Argument(..., metavar="MODEL.tflite|BUNDLE.zip",
                                 help="A .tflite (sidecar next to it) or a bundle."),
    images: List[Path] = typer.Argument(..., metavar="IMAGE...", help="Image files or folders of images."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Class names, one per line (for a bare .tflite)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    threads: int = typer.Option(1, "--threads", min=1, help="Interpreter threads."),
    delegate: str = typer.Option("xnnpack", "--delegate", help="xnnpack | none | edgetpu | gpu | PATH.so."),
    variant: str = typer.Option("two_conv", "--variant", help="Which model of a bundle."),
    precision: str = typer.Option("int8", "--precision", help="Which model of a bundle."),
    margin: float = typer.Option(MARGIN, "--margin", help=MARGIN_HELP),
    strict: bool = typer.Option(False, "--strict", help=STRICT_HELP),
) -> None:
    """Classify X-ray images with a TFLite model, without TensorFlow.

    Exit status: 0 answered; 1 an error (unreadable image, bad model); 3 with --strict when no input can be trusted.
    """
    from cxredge.edge.runtime.predict import run_predict

    p = run_predict(model, images, labels, threads=threads, delegate=delegate, variant=variant,
                    precision=precision, margin=margin, skipped=say_skipped)
    results, bad, files, names, guard, who, runtime = p.results, p.bad, p.files, p.names, p.guard, p.who, p.runtime
    if as_json:
        typer.echo(json.dumps({"model": who, "runtime": runtime, "labels": names, "margin_threshold": margin,
                               "ood_guard": guard.describe(), "predictions": results}, indent=2))
    elif results:
        console.print(table(results, names, f"{title(model, who)} ({runtime})", margin))
    out = err_console if as_json else console
    for line in guard.lines(len(results)):
        out.print(line, highlight=False, soft_wrap=True)
    low = sum(r["low_margin"] for r in results)
    if low:
        out.print(f"[yellow]{low} of {len(results)} predictions are near-ties (top-1 minus top-2 below {margin:g}): "
                  "read them as uncertain[/]", highlight=False, soft_wrap=True)
    if bad:
        raise CxrError(f"{len(bad)} of {len(files)} images unreadable: {bad[0]}"
                       + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))
    untrusted = untrusted_reason(results, guard)
    if untrusted:
        if strict:
            err_console.print(f"[bold red]error:[/] {escape(untrusted)} (--strict: exit {EXIT_OOD})", highlight=False,
                              soft_wrap=True)
            raise typer.Exit(EXIT_OOD)
        if guard.ref is not None:  # a missing guard was said above already
            out.print(f"[yellow]warning: {escape(untrusted)}; --strict makes this exit {EXIT_OOD}[/]",
                      highlight=False, soft_wrap=True)


def classify(model, files: list[Path], names: list[str], guard=None, margin: float = MARGIN
             ) -> tuple[list[dict], list[str]]:
    """The library's classify (cxredge/edge/runtime/predict.py), each unreadable image one red line here."""
    from cxredge.edge.runtime.predict import classify as run_classify

    return run_classify(model, files, names, guard, margin, skipped=say_skipped)


def say_skipped(error: str) -> None:
    err_console.print(f"[red]skipped[/] {escape(error)}", highlight=False, soft_wrap=True)


def title(given: Path, who: dict) -> str:
    kind = "/".join(x for x in (who["variant"], who["precision"]) if x) or "model"
    return f"{given.name}: {kind} sha256 {who['sha256'][:12]}"


def table(results: list[dict], names: list[str], title: str, margin: float = MARGIN):
    """One row per image; folds (never cuts) at any width: long class names wrap in their headers."""
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    t.add_column("image", overflow="fold", ratio=3)
    t.add_column("class", style="bold", overflow="fold", ratio=2)
    for n in names:
        t.add_column(n, justify="right", overflow="fold", min_width=5, ratio=1)
    t.add_column("margin", justify="right", overflow="fold", min_width=6)
    guarded = any(r.get("in_distribution") is not None for r in results)
    if guarded:
        t.add_column("input", overflow="fold", ratio=2)
    for r in results:
        gap = f"{r['margin']:.3f}" + (" [yellow]low[/]" if r["low_margin"] else "")
        cells = [escape(Path(r["image"]).name), escape(r["label"]), *[f"{r['probabilities'][n]:.3f}" for n in names],
                 gap]
        if guarded:
            cells.append("ok" if r["in_distribution"] else f"[yellow]unlike val: {r['ood']['reasons'][0]}[/]")
        t.add_row(*cells)
    if margin > 0:
        t.caption = f"margin = top-1 minus top-2 probability; low: below {margin:g} (--margin)"
    return t
