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

MARGIN = 0.10  # top-1 minus top-2 probability below this: a near-tie, marked "low margin"
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
    from cxredge.edge.formats.sidecar import model_labels
    from cxredge.edge.ood.flags import Guard
    from cxredge.edge.runtime.interpreter import check_tflite_file, check_threads, open_model
    from cxredge.vocab import resolve_delegate

    if not 0 <= margin < 1:
        raise CxrError(f"--margin {margin}: expected a probability difference from 0 (never) to below 1")
    with contextlib.ExitStack() as stack:
        path = model_in_bundle(model, variant, precision, stack) if model.suffix.lower() == ".zip" else model
        check_tflite_file(path)
        names = model_labels(path, labels)
        m = open_model(path, names, threads=check_threads(threads), delegate=resolve_delegate(delegate))
        files = expand_images(images)
        guard = Guard.for_model(path, str(model), m.image_size)  # OOD guard; no `ood` key: no guard, said below
        who = identify(model, path)
        results, bad = classify(m, files, names, guard, margin)
        runtime = f"{m.runtime.name} {m.runtime.version}"
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


def untrusted_reason(results: list[dict], guard) -> str | None:
    """Why no prediction can be trusted (every input out of distribution, or no guard), else None."""
    if not results:
        return None
    if guard.ref is None:
        return f"no input could be checked: {guard.model_name} has no OOD guard ({guard.why})"
    if all(r.get("in_distribution") is False for r in results):
        return f"every input ({len(results)} of {len(results)}) looks unlike the model's {guard.ref.split} images"
    return None


def identify(given: Path, path: Path) -> dict:
    """The model that answers: the file given, the member of a bundle, its variant, precision and sha256."""
    from cxredge.edge.formats.sidecar import read_sidecar
    from cxredge.io import sha256_file

    try:
        side = read_sidecar(path) or {}
    except CxrError:
        side = {}
    bundled = given.suffix.lower() == ".zip"
    return {"path": str(given), "member": f"{path.parent.name}/{path.name}" if bundled else None,
            "variant": side.get("variant") or (path.parent.name if bundled else None),
            "precision": side.get("precision") or (path.stem if bundled else None),
            "sha256": sha256_file(path)}


def title(given: Path, who: dict) -> str:
    kind = "/".join(x for x in (who["variant"], who["precision"]) if x) or "model"
    return f"{given.name}: {kind} sha256 {who['sha256'][:12]}"


def model_in_bundle(bundle: Path, variant: str, precision: str, stack: contextlib.ExitStack) -> Path:
    from cxredge.edge.formats.bundle import open_bundle
    from cxredge.io import scratch_dir

    dest = stack.enter_context(scratch_dir(tempfile.gettempdir()))  # stale ones of killed runs are removed
    manifest = open_bundle(bundle, dest)
    path = dest / variant / f"{precision}.tflite"
    if not path.is_file():
        have = ", ".join(m["path"] for m in manifest.get("models", []))
        raise CxrError(f"{bundle}: no {variant}/{precision}.tflite inside (has {have}); use --variant/--precision")
    return path


def expand_images(items: list[Path]) -> list[Path]:
    from cxredge.edge.data.images import IMAGE_SUFFIXES, is_image_file

    files: list[Path] = []
    for item in items:
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if is_image_file(p))  # + suffixless DICOM (PACS exports)
            if not found:
                raise CxrError(f"{item}: folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            files += found
        else:
            files.append(item)
    return files


def classify(model, files: list[Path], names: list[str], guard=None, margin: float = MARGIN
             ) -> tuple[list[dict], list[str]]:
    import numpy as np

    from cxredge.edge.data.dicom import is_dicom, read_facts
    from cxredge.edge.data.images import load_image

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
        second = float(np.partition(probs, -2)[-2]) if len(probs) > 1 else 0.0
        gap = float(probs[top]) - second
        results.append({"image": str(f), "label": names[top], "index": top, "probability": float(probs[top]),
                        "probabilities": {n: float(p) for n, p in zip(names, probs)}, "raw": raw.tolist(),
                        "margin": round(gap, 4), "low_margin": bool(gap < margin)})
        if is_dicom(f):  # what the header says about the film (no patient data): view, photometric, bits
            results[-1]["dicom"] = read_facts(f).record()
        if guard is not None:
            guard.mark(results[-1], img)
    return results, bad


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
