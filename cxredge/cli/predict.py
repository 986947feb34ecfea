"""cxredge predict: the top class and the probabilities of each image, with one .tflite. TF-free."""
from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from cxredge.cli.common import console, err_console, handle_errors
from cxredge.errors import CxrError

JSON_HELP = ("Print one JSON object instead of a table: {model, runtime, labels, ood_guard, predictions}, "
             "predictions holding one entry per image (label, probabilities, in_distribution, ood).")


@handle_errors
def predict(
    model: Path = typer.Argument(..., metavar="MODEL.tflite|BUNDLE.zip", help="A .tflite (sidecar next to it) or a bundle."),
    images: List[Path] = typer.Argument(..., metavar="IMAGE...", help="Image files or folders of images."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Class names, one per line (for a bare .tflite)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    threads: int = typer.Option(1, "--threads", min=1, help="Interpreter threads."),
    delegate: str = typer.Option("xnnpack", "--delegate", help="xnnpack | none | edgetpu | gpu | PATH.so."),
    variant: str = typer.Option("two_conv", "--variant", help="Which model of a bundle."),
    precision: str = typer.Option("int8", "--precision", help="Which model of a bundle."),
) -> None:
    """Classify X-ray images with a TFLite model, without TensorFlow."""
    from cxredge.edge.ood_flags import Guard
    from cxredge.edge.runtime import TFLiteModel, check_tflite_file
    from cxredge.edge.sidecar import model_labels
    from cxredge.vocab import resolve_delegate

    with contextlib.ExitStack() as stack:
        path = model_in_bundle(model, variant, precision, stack) if model.suffix.lower() == ".zip" else model
        check_tflite_file(path)
        names = model_labels(path, labels)
        m = TFLiteModel(path, threads=threads, delegate=resolve_delegate(delegate))
        if m.num_classes != len(names):
            raise CxrError(f"{path}: {m.num_classes} outputs but {len(names)} labels ({', '.join(names)})")
        files = expand_images(images)
        guard = Guard.for_model(path, str(model), m.image_size)  # OOD guard; no `ood` key: no guard, said below
        results, bad = classify(m, files, names, guard)
        runtime = f"{m.runtime.name} {m.runtime.version}"
    if as_json:
        typer.echo(json.dumps({"model": str(model), "runtime": runtime, "labels": names,
                               "ood_guard": guard.describe(), "predictions": results}, indent=2))
    elif results:
        console.print(table(results, names, f"{model.name} ({runtime})"))
    for line in guard.lines(len(results)):
        (err_console if as_json else console).print(line, highlight=False, soft_wrap=True)
    if bad:
        raise CxrError(f"{len(bad)} of {len(files)} images unreadable: {bad[0]}"
                       + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))


def model_in_bundle(bundle: Path, variant: str, precision: str, stack: contextlib.ExitStack) -> Path:
    from cxredge.edge.bundle import open_bundle

    dest = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cxredge-bundle-")))
    manifest = open_bundle(bundle, dest)
    path = dest / variant / f"{precision}.tflite"
    if not path.is_file():
        have = ", ".join(m["path"] for m in manifest.get("models", []))
        raise CxrError(f"{bundle}: no {variant}/{precision}.tflite inside (has {have}); use --variant/--precision")
    return path


def expand_images(items: list[Path]) -> list[Path]:
    from cxredge.edge.images import IMAGE_SUFFIXES

    files: list[Path] = []
    for item in items:
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise CxrError(f"{item}: folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            files += found
        else:
            files.append(item)
    return files


def classify(model, files: list[Path], names: list[str], guard=None) -> tuple[list[dict], list[str]]:
    from cxredge.edge.images import load_image

    results, bad = [], []
    size = model.image_size
    for f in files:
        try:
            img = load_image(f, size)
        except CxrError as exc:
            bad.append(str(exc))
            err_console.print(f"[red]skipped[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            continue
        model.set_input(img)
        model.invoke()
        probs = model.output()[0]
        raw = model.raw_output()[0]
        top = int(probs.argmax())
        results.append({"image": str(f), "label": names[top], "index": top, "probability": float(probs[top]),
                        "probabilities": {n: float(p) for n, p in zip(names, probs)}, "raw": raw.tolist()})
        if guard is not None:
            guard.mark(results[-1], img)
    return results, bad


def table(results: list[dict], names: list[str], title: str):
    from rich.table import Table

    t = Table(title=title)
    t.add_column("image", overflow="fold")
    t.add_column("class", style="bold")
    for n in names:
        t.add_column(n, justify="right")
    guarded = any(r.get("in_distribution") is not None for r in results)
    if guarded:
        t.add_column("input")
    for r in results:
        cells = [Path(r["image"]).name, r["label"], *[f"{r['probabilities'][n]:.3f}" for n in names]]
        if guarded:
            cells.append("ok" if r["in_distribution"] else f"[yellow]unlike val: {r['ood']['reasons'][0]}[/]")
        t.add_row(*cells)
    return t
