"""cxredge report: one self-contained HTML page and a Markdown twin for a run and its benchmarks. TF-free."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from cxredge.cli.common import check_out_dir, console, handle_errors
from cxredge.errors import CxrError
from cxredge.formats import RUN_JSON
from cxredge.paths import DEFAULT_RUN

BENCH_HELP = ("bench.json files, or LiteRT benchmark_model text output, to include and compare (repeatable); "
              "the run's benches (bench/*/bench.json, devices/*/bench.json) are included by themselves.")


@handle_errors
def report(
    run: Optional[Path] = typer.Option(None, "--run",
                                       help=f"Run folder (default {DEFAULT_RUN}; optional with --bench)."),
    bench: Optional[List[Path]] = typer.Option(None, "--bench", help=BENCH_HELP),
    out: Optional[Path] = typer.Option(None, "--out",
                                       help="Folder for report.html / report.md (default: the run folder, else .)."),
) -> None:
    """Write report.html (images embedded) and report.md: training, quantization and bench results."""
    from cxredge.edge.report.page import write_report

    check_out_dir(out)
    run_dir = run if run is not None else (DEFAULT_RUN if DEFAULT_RUN.is_dir() or not bench else None)
    if run_dir is not None and not run_dir.is_dir():
        raise CxrError(f"--run {run_dir}: run folder not found (train first, or give --bench FILE only)")
    benches, warnings = gather(list(bench or []), run_dir)
    if run_dir is not None and not (run_dir / RUN_JSON).is_file() and not benches:
        raise CxrError(f"--run {run_dir}: no run.json and no bench.json: nothing to report")
    out_dir = out or run_dir or Path(".")
    html_path, md_path, doc = write_report(out_dir, run_dir, benches, warnings)
    for note in doc.notes:
        console.print(f"[yellow]note[/] {escape(note)}", highlight=False, soft_wrap=True)
    n_img = sum(1 for b in doc.blocks if b[0] == "img")
    n_tab = sum(1 for b in doc.blocks if b[0] == "table")
    console.print(f"wrote [bold]{html_path}[/] ({html_path.stat().st_size / 1e6:.1f} MB, {n_tab} tables, "
                  f"{n_img} figures embedded) and {md_path}")


def gather(given: list[Path], run_dir: Path | None) -> tuple[list[tuple[Path, dict]], list[str]]:
    """The benches to report: the run's own (found by themselves) then the --bench files, each once.

    A --bench file that is not a usable bench is an error; one found in the run folder is skipped with a
    warning (a broken devices/*/bench.json must not break every later report). The same file given twice
    (same path, or the same bytes) is reported once, with a note."""
    from cxredge.edge.bench.store import find_benches
    from cxredge.edge.report.inputs import check_bench
    from cxredge.edge.runtime.benchmark_model import read_bench_file
    from cxredge.io import sha256_file

    found = find_benches(run_dir) if run_dir is not None else []
    benches, warnings, seen = [], [], {}
    for path, explicit in [(f, False) for f in found] + [(f, True) for f in given]:
        try:
            ident = (path.resolve(), sha256_file(path)) if path.is_file() else (path.resolve(), None)
        except OSError:
            ident = (path.resolve(), None)
        twin = next((v for (r, h), v in seen.items() if r == ident[0] or (h is not None and h == ident[1])), None)
        if twin is not None:
            if explicit and twin[1]:
                warnings.append(f"{path}: the same bench as {twin[0]} (given twice): reported once")
            continue
        try:
            doc = check_bench(path, read_bench_file(path))
        except CxrError as exc:
            if explicit:
                raise
            warnings.append(f"{path}: skipped: {exc}")
            continue
        seen[ident] = (path, explicit)
        benches.append((path, doc))
    return benches, warnings
