"""cxredge explain: where does the model look? Occlusion saliency with any .tflite, TF-free (Grad-CAM for a
.keras model when TensorFlow is installed)."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from cxredge.cli.common import check_out_dir, console, err_console, handle_errors
from cxredge.edge.explain.occlusion import DEFAULT_BATCH, DEFAULT_BORDER, DEFAULT_PATCH, DEFAULT_STRIDE
from cxredge.errors import CxrError
from cxredge.formats import EXPLAIN_DIR, EXPLAIN_JSON, RUN_JSON


@handle_errors
def explain(
    model: Path = typer.Argument(..., metavar="MODEL.tflite|BUNDLE.zip|MODEL.keras",
                                 help="A .tflite (sidecar next to it), a bundle, or a model.keras (Grad-CAM; "
                                      "needs TensorFlow)."),
    images: List[Path] = typer.Argument(..., metavar="IMAGE...", help="Image files or folders of images."),
    out: Optional[Path] = typer.Option(None, "--out",
                                       help="Output folder (default: <run>/explain when MODEL is in a run folder, "
                                            "else ./explain)."),
    patch: int = typer.Option(DEFAULT_PATCH, "--patch", help="Occluding patch side, pixels of the model input."),
    stride: int = typer.Option(DEFAULT_STRIDE, "--stride", help="Step between patches, pixels."),
    fill: str = typer.Option("128", "--fill", help="Patch gray value 0-255, or 'mean' (the image's mean)."),
    border: float = typer.Option(DEFAULT_BORDER, "--border", help="Border strip width, fraction of the side."),
    compare: Optional[Path] = typer.Option(None, "--compare",
                                           help="A second .tflite to explain and correlate with (with a bundle: or a "
                                                "precision of it, e.g. float32)."),
    target: Optional[str] = typer.Option(None, "--class", help="Explain this class instead of the predicted one."),
    per_class: Optional[int] = typer.Option(None, "--per-class", min=1,
                                            help="From folders: the first N images of each class folder."),
    batch: Optional[int] = typer.Option(None, "--batch", min=1,
                                        help=f"Occluded copies per invoke (1 = no resize; default {DEFAULT_BATCH} for "
                                             f"int8 models, 1 for float: the faster of each: docs/explain.md)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1,
                                          help="Interpreter threads (default: the CPU count, at most 4)."),
    delegate: str = typer.Option("xnnpack", "--delegate", help="xnnpack | none | PATH.so."),
    method: str = typer.Option("auto", "--method",
                               help="occlusion | gradcam (gradcam: .keras only); auto = occlusion for .tflite, "
                                    "gradcam for .keras."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Class names, one per line (for a bare .tflite)."),
    variant: str = typer.Option("two_conv", "--variant", help="Which model of a bundle."),
    precision: str = typer.Option("int8", "--precision", help="Which model of a bundle."),
    as_json: bool = typer.Option(False, "--json", help="Print explain.json to stdout instead of a table."),
) -> None:
    """Heatmaps of where a model looks (occlusion saliency), its share on the image border, float-vs-int8 maps."""
    from cxredge.edge.explain.occlusion import OcclusionSettings, parse_fill
    from cxredge.edge.runtime.predict import expand_images, model_in_bundle

    settings = OcclusionSettings(patch, stride, parse_fill(fill), border)
    from cxredge.edge.runtime.interpreter import check_threads

    threads = default_threads() if threads is None else check_threads(threads)
    if method not in ("auto", "occlusion", "gradcam"):
        raise CxrError(f"--method {method}: expected auto, occlusion or gradcam")
    with contextlib.ExitStack() as stack:
        path = model_in_bundle(model, variant, precision, stack) if model.suffix.lower() == ".zip" else model
        first = make_explainer(path, model, settings, method, batch, threads, delegate, labels)
        explainers = [first]
        if compare is not None:
            bundled = model.suffix.lower() == ".zip" and not compare.suffix and not compare.exists()
            other = model_in_bundle(model, variant, str(compare), stack) if bundled else compare
            explainers.append(make_explainer(other, compare, settings, "occlusion" if method == "gradcam" else method,
                                             batch, threads, delegate, labels, taken=first.key))
            check_same_labels(first, explainers[1])
        if target is not None and target not in first.info["labels"]:
            raise CxrError(f"--class {target}: not one of the model's labels ({', '.join(first.info['labels'])})")
        files = pick(expand_images(images), per_class)
        out_dir = out or default_out(model)
        check_out_dir(out_dir)
        doc = run_with_progress(files, explainers, settings, out_dir, target)
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
    else:
        console.print(table(doc))
        console.print(f"wrote [bold]{out_dir / EXPLAIN_JSON}[/], {out_dir / doc['grid']} and "
                      f"{len(doc['images']) * len(explainers)} overlays in {out_dir / 'overlays'}")
    for note in filter(None, (e.info.get("note") for e in explainers)):
        err_console.print(f"[yellow]note[/] {escape(note)}", highlight=False)
    if doc["unreadable"]:
        raise CxrError(f"{len(doc['unreadable'])} of {len(files)} images unreadable: {doc['unreadable'][0]}")


def make_explainer(path: Path, shown: Path, settings, method: str, batch: int, threads: int, delegate: str,
                   labels: Optional[Path], taken: str | None = None):
    if path.suffix.lower() == ".keras":
        from cxredge.train.gradcam import keras_explainer

        ex = keras_explainer(path, settings, "gradcam" if method == "auto" else method, batch, labels)
    else:
        if method == "gradcam":
            raise CxrError(f"--method gradcam: needs a .keras model ({path} is not one); .tflite uses occlusion")
        from cxredge.edge.explain.run import tflite_explainer

        ex = tflite_explainer(path, shown, settings, batch, threads, delegate, labels)
    if ex.key == taken:
        from dataclasses import replace

        ex = replace(ex, key=ex.key + "_compare", info={**ex.info, "key": ex.key + "_compare"})
    return ex


def check_same_labels(a, b) -> None:
    if a.info["labels"] != b.info["labels"]:
        raise CxrError(f"--compare {b.info['path']}: labels {', '.join(b.info['labels'])} differ from "
                       f"{a.info['path']}'s ({', '.join(a.info['labels'])})")


def default_threads() -> int:
    import os

    return max(1, min(4, os.cpu_count() or 1))


def pick(files: list[Path], per_class: int | None) -> list[Path]:
    if per_class is None:
        return files
    seen: dict[Path, int] = {}
    out = []
    for f in files:
        seen[f.parent] = seen.get(f.parent, 0) + 1
        if seen[f.parent] <= per_class:
            out.append(f)
    return out


def default_out(model: Path) -> Path:
    run = model.resolve().parent.parent
    return run / EXPLAIN_DIR if (run / RUN_JSON).is_file() else Path(EXPLAIN_DIR)


def run_with_progress(files: list[Path], explainers, settings, out_dir: Path, target: str | None) -> dict:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from cxredge.edge.explain.run import explain_all

    total = len(files) * sum(e.steps for e in explainers)
    with Progress(TextColumn("explain"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True) as bar:
        task = bar.add_task("explain", total=total)
        return explain_all(files, explainers, explainers[0].info["labels"], settings, out_dir,
                           explainers[0].info["image_size"], target, progress=lambda n: bar.advance(task, n))


def table(doc: dict):
    from rich.table import Table

    keys = [m["key"] for m in doc["models"]]
    t = Table(title=f"explain: {', '.join(m['path'] for m in doc['models'])} "
                    f"(border strip {doc['regions']['border_pixels']} px = "
                    f"{doc['regions']['border_area_share']:.0%} of the area)")
    t.add_column("image", overflow="fold")
    t.add_column("true")
    for k in keys:
        t.add_column(f"{k} class", style="bold")
        t.add_column(f"{k} border", justify="right")
    for k in keys[1:]:
        t.add_column(f"r / rho vs {keys[0]}", justify="right")
    for e in doc["images"]:
        cells = [Path(e["image"]).name, e["true_class"] or "-"]
        for k in keys:
            r = e[k]
            cells += [f"{r['label']} {r['probability']:.2f}",
                      "-" if r["border_share"] is None else f"{r['border_share']:.2f}"]
        for k in keys[1:]:
            v = e[k]["vs_" + keys[0]]
            cells.append(" / ".join("-" if v[m] is None else f"{v[m]:.2f}" for m in ("pearson", "spearman")))
        t.add_row(*cells)
    return t
