"""cxredge export: a run's models, sidecars and labels (optionally test images) as one zip. TF-free."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from cxredge.cli.common import check_out_file, console, handle_errors, split_list
from cxredge.errors import CxrError
from cxredge.paths import DEFAULT_RUN


@handle_errors
def export(
    out: Path = typer.Option(..., "--out", help="The bundle to write (BUNDLE.zip)."),
    run: Path = typer.Option(DEFAULT_RUN, "--run", help="Run folder with <variant>/<precision>.tflite."),
    variant: Optional[str] = typer.Option(None, "--variant", help="Only these variants (comma-separated)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="Only these precisions, e.g. int8,float32."),
    with_test_images: bool = typer.Option(False, "--with-test-images",
                                          help="Add the run's test split (bench needs no --data then)."),
    data: Optional[Path] = typer.Option(None, "--data",
                                        help="Where the run's dataset is now (default: run.json data.path)."),
) -> None:
    """Pack a run's TFLite models into one bundle to copy to a device (bench and predict read it as is)."""
    from cxredge.edge.data.sources import read_run
    from cxredge.edge.formats import bundle

    if out.suffix.lower() != ".zip":
        raise CxrError(f"--out {out}: a bundle is a .zip file")
    check_out_file(out)
    if not run.is_dir():
        raise CxrError(f"--run {run}: run folder not found")
    variants = split_list(variant, "--variant") if variant else None
    precisions = split_list(precision, "--precision") if precision else None
    with tempfile.TemporaryDirectory(prefix="cxredge-export-") as tmp:
        test = test_images(run, read_run(run), data, Path(tmp)) if with_test_images else None
        files, meta = bundle.collect_run(run, variants, precisions, test)
        manifest = bundle.write_bundle(out, files, meta)
    show(out, manifest)


def test_images(run: Path, run_json: dict | None, data: Path | None, tmp: Path) -> list[tuple[Path, str]]:
    """The run's test split; DICOM files go in as de-identified PNGs of their decoded pixels (no header)."""
    from cxredge.edge.data.dataset import scan_recorded
    from cxredge.edge.data.dicom import is_dicom, to_png

    info = (run_json or {}).get("data") or {}
    root = data or (Path(info["path"]) if info.get("path") else None)
    if root is None:
        raise CxrError(f"--with-test-images: {run}/run.json names no dataset; pass --data DIR")
    ds = scan_recorded(info, root)
    out = []
    for i, (p, y) in enumerate(ds.splits["test"]):
        if is_dicom(p):
            p = to_png(p, tmp / str(i) / f"{p.stem}.png")
        out.append((p, ds.classes[y]))
    return out


def show(out: Path, manifest: dict) -> None:
    from rich.table import Table

    t = Table(title=f"{out} ({out.stat().st_size / 1e6:.1f} MB)")
    t.add_column("model")
    t.add_column("MB", justify="right")
    t.add_column("sha256")
    for m in manifest["models"]:
        t.add_row(m["path"], f"{m['size_bytes'] / 1e6:.2f}", m["sha256"][:16])
    console.print(t)
    console.print(f"classes: {escape(', '.join(manifest['classes']))}; test images: {manifest['test_images']}")
