"""cxredge report: one self-contained HTML page and a Markdown twin for a run and its benchmarks. TF-free."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from cxredge.cli.common import console, handle_errors
from cxredge.errors import CxrError
from cxredge.formats import BENCH_JSON, DEVICES_DIR, RUN_JSON
from cxredge.paths import DEFAULT_RUN

BENCH_HELP = ("bench.json files, or LiteRT benchmark_model text output, to include and compare (repeatable); "
              "the run's bench.json and devices/*/bench.json are included by themselves.")


@handle_errors
def report(
    run: Optional[Path] = typer.Option(None, "--run", help=f"Run folder (default {DEFAULT_RUN}; optional with --bench)."),
    bench: Optional[List[Path]] = typer.Option(None, "--bench", help=BENCH_HELP),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for report.html / report.md (default: the run folder, else .)."),
) -> None:
    """Write report.html (images embedded) and report.md: training, quantization and bench results."""
    from cxredge.edge.benchmark_model import read_bench_file
    from cxredge.edge.report import write_report

    run_dir = run if run is not None else (DEFAULT_RUN if DEFAULT_RUN.is_dir() or not bench else None)
    if run_dir is not None and not run_dir.is_dir():
        raise CxrError(f"--run {run_dir}: run folder not found (train first, or give --bench FILE only)")
    files = list(bench or [])
    if run_dir is not None and (run_dir / BENCH_JSON).is_file() and not any(
            f.resolve() == (run_dir / BENCH_JSON).resolve() for f in files):
        files.insert(0, run_dir / BENCH_JSON)
    if run_dir is not None:  # what `cxredge bench --remote` brought back joins the report by itself
        files += [d for d in sorted((run_dir / DEVICES_DIR).glob(f"*/{BENCH_JSON}"))
                  if not any(f.resolve() == d.resolve() for f in files)]
    benches = [(f, read_bench_file(f)) for f in files]
    if run_dir is not None and not (run_dir / RUN_JSON).is_file() and not benches:
        raise CxrError(f"--run {run_dir}: no run.json and no bench.json: nothing to report")
    out_dir = out or run_dir or Path(".")
    html_path, md_path, doc = write_report(out_dir, run_dir, benches)
    for note in doc.notes:
        console.print(f"[yellow]note[/] {escape(note)}", highlight=False, soft_wrap=True)
    n_img = sum(1 for b in doc.blocks if b[0] == "img")
    n_tab = sum(1 for b in doc.blocks if b[0] == "table")
    console.print(f"wrote [bold]{html_path}[/] ({html_path.stat().st_size / 1e6:.1f} MB, {n_tab} tables, "
                  f"{n_img} figures embedded) and {md_path}")
