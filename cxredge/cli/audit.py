"""cxredge audit: file facts, duplicates and a shortcut probe for a class-folder dataset. TF-free."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from cxredge.cli import data_options as D
from cxredge.cli.common import check_out_dir, console, handle_errors
from cxredge.errors import CxrError
from cxredge.paths import SAMPLE_DATA


@handle_errors
def audit(
    data: Path = typer.Argument(SAMPLE_DATA, show_default="the bundled sample",
                                help="DIR/SPLIT/CLASS/ images (SPLIT: train, val, test) or DIR/CLASS/."),
    out: Optional[Path] = typer.Option(None, "--out",
                                       help="Folder for audit.json / audit.md / audit.html (default "
                                            "runs/audit/<DATA name>)."),
    seed: int = typer.Option(0, "--seed",
                             help="Seeds the probe's folds (and the 70/15/15 split of a DIR/<class>/ layout, as "
                                  "train's --seed)."),
    folds: int = typer.Option(5, "--folds", help="Cross-validation folds of the shortcut probe (2..20)."),
    near_threshold: Optional[int] = typer.Option(None, "--near-threshold",
                                                 help="pHash Hamming distance (of 256 bits) for a near duplicate "
                                                      "(default 46, see docs/audit.md)."),
    skip_bad: bool = typer.Option(False, "--skip-bad",
                                  help="List unreadable images in audit.json and audit the rest, instead of stopping."),
    path_column: str = D.PATH_COLUMN, label_column: str = D.LABEL_COLUMN,
    patient_column: Optional[str] = D.PATIENT_COLUMN, split_column: Optional[str] = D.SPLIT_COLUMN,
    path_pattern: str = D.PATH_PATTERN, label_map: Optional[str] = D.LABEL_MAP,
    patient_regex: Optional[str] = D.PATIENT_REGEX, any_modality: bool = D.ANY_MODALITY,
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
    from cxredge.edge.data.dataset import scan

    if not 2 <= folds <= 20:
        raise CxrError(f"--folds {folds}: expected 2..20")
    threshold = NEAR_THRESHOLD if near_threshold is None else near_threshold
    if not 0 <= threshold < HASH_BITS:
        raise CxrError(f"--near-threshold {threshold}: expected 0..{HASH_BITS - 1}")
    out = out or Path("runs") / "audit" / Path(data).resolve().name
    check_out_dir(out)
    settings = AuditSettings(near_threshold=threshold, probe=ProbeSettings(folds=folds, seed=seed), skip_bad=skip_bad)
    t0 = time.perf_counter()
    options = D.data_options(path_column, label_column, patient_column, split_column, path_pattern, label_map,
                             patient_regex, any_modality)
    ds = scan(data, seed=seed, options=options)
    total = sum(len(v) for v in ds.splits.values())
    with Progress(TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console) as bar:
        task = bar.add_task("read images", total=total)
        rows = collect_files(ds, skip_bad=skip_bad, progress=lambda n: bar.advance(task, n))
    with console.status("duplicates and shortcut probe"):
        result = run_audit(ds, rows, settings)
    result["seconds"]["total"] = round(time.perf_counter() - t0, 2)
    add_patients(result, ds)
    paths = write_outputs(result, out, Path(ds.root), rows.names)
    console.print(summary_table(result))
    print_warnings(console, result)
    if rows.unreadable:
        console.print(f"[yellow]skipped {len(rows.unreadable)} unreadable image(s)[/] (--skip-bad), first: "
                      f"{escape(result['unreadable'][0])}", highlight=False, soft_wrap=True)
    t = result["seconds"]
    console.print(f"{len(result['warnings'])} warning(s); {t['total']:.1f} s (read {t['read']:.1f}, duplicates "
                  f"{t['duplicates']:.1f}, probe {t['probe']:.1f}); wrote {', '.join(str(p) for p in paths)}")


def add_patients(result: dict, ds) -> None:
    """The label table's counts and the patient block (counts, leakage) into audit.json; a leak is a warning."""
    info = ds.info or {}
    for key in ("table", "patients"):
        if info.get(key):
            result[key] = info[key]
    leaks = ds.patient_leaks()
    if leaks:
        pairs = ", ".join(f"{k}: {v}" for k, v in leaks.items())
        result["warnings"].append({"kind": "patient_leak", "message": f"{sum(leaks.values())} patient(s) have images "
                                   f"in two splits ({pairs}): test metrics would be optimistic; split by patient"})
