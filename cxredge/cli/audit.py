"""cxredge audit: file facts, duplicates and a shortcut probe for a class-folder dataset. TF-free."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from cxredge.cli.common import console, handle_errors
from cxredge.errors import CxrError
from cxredge.paths import SAMPLE_DATA


@handle_errors
def audit(
    data: Path = typer.Argument(SAMPLE_DATA, help="DIR/{train,val,test}/<class>/ or DIR/<class>/ (default: the bundled sample)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for audit.json / audit.md / audit.html (default runs/audit/<DATA name>)."),
    seed: int = typer.Option(0, "--seed", help="Seeds the probe's folds (and the 70/15/15 split of a DIR/<class>/ layout, as train's --seed)."),
    folds: int = typer.Option(5, "--folds", help="Cross-validation folds of the shortcut probe (2..20)."),
    near_threshold: Optional[int] = typer.Option(None, "--near-threshold", help="pHash Hamming distance (of 256 bits) for a near duplicate (default 46, see docs/audit.md)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="List unreadable images in audit.json and audit the rest, instead of stopping."),
) -> None:
    """Audit a dataset before training: file facts, duplicates, and what separates the classes besides the disease."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from cxredge.edge.audit import AuditSettings, collect_files
    from cxredge.edge.audit import audit as run_audit
    from cxredge.edge.audit.console import print_warnings, summary_table
    from cxredge.edge.audit.duplicates import NEAR_THRESHOLD
    from cxredge.edge.audit.features import HASH_BITS
    from cxredge.edge.audit.probe import ProbeSettings
    from cxredge.edge.audit.writers import write_outputs
    from cxredge.edge.dataset import scan

    if not 2 <= folds <= 20:
        raise CxrError(f"--folds {folds}: expected 2..20")
    threshold = NEAR_THRESHOLD if near_threshold is None else near_threshold
    if not 0 <= threshold < HASH_BITS:
        raise CxrError(f"--near-threshold {threshold}: expected 0..{HASH_BITS - 1}")
    out = out or Path("runs") / "audit" / Path(data).resolve().name
    if out.exists() and not out.is_dir():
        raise CxrError(f"--out {out}: exists and is not a folder")
    settings = AuditSettings(near_threshold=threshold, probe=ProbeSettings(folds=folds, seed=seed), skip_bad=skip_bad)
    t0 = time.perf_counter()
    ds = scan(data, seed=seed)
    total = sum(len(v) for v in ds.splits.values())
    with Progress(TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console) as bar:
        task = bar.add_task("read images", total=total)
        rows = collect_files(ds, skip_bad=skip_bad, progress=lambda n: bar.advance(task, n))
    with console.status("duplicates and shortcut probe"):
        result = run_audit(ds, rows, settings)
    result["seconds"]["total"] = round(time.perf_counter() - t0, 2)
    paths = write_outputs(result, out, Path(ds.root))
    console.print(summary_table(result))
    print_warnings(console, result)
    if rows.unreadable:
        console.print(f"[yellow]skipped {len(rows.unreadable)} unreadable image(s)[/] (--skip-bad), first: {rows.unreadable[0]}")
    t = result["seconds"]
    console.print(f"{len(result['warnings'])} warning(s); {t['total']:.1f} s (read {t['read']:.1f}, duplicates "
                  f"{t['duplicates']:.1f}, probe {t['probe']:.1f}); wrote {', '.join(str(p) for p in paths)}")
