"""cxredge bench: accuracy and latency of every .tflite of a run, of given models, or of a bundle. TF-free."""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from cxredge.cli.bench_common import bar, no_row_ok, resolve_source
from cxredge.cli.bench_remote import REMOTE, REMOTE_HELP
from cxredge.cli.common import console, handle_errors, split_ints, split_list
from cxredge.errors import CxrError
from cxredge.formats import BENCH_JSON, BENCH_MD
from cxredge.paths import DEFAULT_RUN
from cxredge.vocab import SPLITS


@handle_errors
def bench(
    models: Optional[List[Path]] = typer.Argument(None, metavar="[MODEL.tflite|DIR ...|BUNDLE.zip]",
                                                  help="Models, folders of models, or one bundle (default: --run)."),
    run: Optional[Path] = typer.Option(None, "--run", help=f"Run folder (default {DEFAULT_RUN} when no MODEL is given)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Labelled images (default: the bundle's test images or the run's "
                                        "dataset). An external test set: DIR/test/<class>/ or DIR/<class>/ (every image is test); "
                                        "class folders are matched to the model's labels by name."),
    split: str = typer.Option("test", "--split", help="train | val | test | all."),
    name: Optional[str] = typer.Option(None, "--name", help="Name of the dataset in bench.json and the report "
                                       "(default: the folder's name)."),
    ci: int = typer.Option(2000, "--ci", help="Bootstrap resamples for the 95% confidence intervals (0 = none)."),
    threads: str = typer.Option("1", "--threads", help="Thread counts, e.g. 1,2,4."),
    delegate: str = typer.Option("xnnpack", "--delegate",
                                 help="xnnpack | none | edgetpu | gpu | PATH.so, comma-separated."),
    delegate_option: Optional[List[str]] = typer.Option(None, "--delegate-option", help="KEY=VALUE for external delegates (repeatable)."),
    runs: int = typer.Option(100, "--runs", help="Timed invokes per row."),
    warmup: int = typer.Option(10, "--warmup", help="Untimed invokes before timing."),
    limit: Optional[int] = typer.Option(None, "--limit", help="At most N images (stratified) for accuracy."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Labels for bare .tflite files (one per line)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where bench.json/md and plots go (default: the run folder, else .)."),
    remote: Optional[List[str]] = typer.Option(None, "--remote", rich_help_panel=REMOTE, help=REMOTE_HELP["remote"]),
    remote_python: Optional[str] = typer.Option(None, "--remote-python", rich_help_panel=REMOTE, help=REMOTE_HELP["python"]),
    remote_venv: Optional[str] = typer.Option(None, "--remote-venv", rich_help_panel=REMOTE, help=REMOTE_HELP["venv"]),
    remote_install: Optional[str] = typer.Option(None, "--remote-install", rich_help_panel=REMOTE, help=REMOTE_HELP["install"]),
    remote_env: Optional[List[str]] = typer.Option(None, "--remote-env", rich_help_panel=REMOTE, help=REMOTE_HELP["env"]),
    remote_prefix: Optional[str] = typer.Option(None, "--remote-prefix", rich_help_panel=REMOTE, help=REMOTE_HELP["prefix"]),
    ssh_option: Optional[List[str]] = typer.Option(None, "--ssh-option", rich_help_panel=REMOTE, help=REMOTE_HELP["ssh_option"]),
    ssh_config: Optional[Path] = typer.Option(None, "--ssh-config", rich_help_panel=REMOTE, help=REMOTE_HELP["ssh_config"]),
) -> None:
    """Bench accuracy (vs the labels) and latency (init, first, median/p90/p99) of TFLite models, without TensorFlow."""
    from cxredge.edge import results
    from cxredge.edge.bench import BenchSettings

    settings = BenchSettings(threads=tuple(split_ints(threads, "--threads")),
                             delegates=tuple(split_list(delegate, "--delegate")),
                             delegate_options=parse_options(delegate_option or []), runs=runs, warmup=warmup)
    if limit is not None and limit < 1:
        raise CxrError(f"--limit {limit}: must be >= 1")
    if remote:  # the models and the chosen images go to each device over SSH (cxredge/remote/)
        from cxredge.cli.bench_remote import bench_remote, remote_settings

        rs = remote_settings(remote, remote_python, remote_venv, remote_install, remote_env, ssh_option, ssh_config,
                             remote_prefix)
        return bench_remote(models or [], run, labels, data, split, limit, settings, out, rs)
    if ci < 0:
        raise CxrError(f"--ci {ci}: must be >= 0 (0 = no confidence intervals)")
    with contextlib.ExitStack() as stack:
        source = resolve_source(models or [], run, labels, stack)
        doc, out_dir = execute(source, data, split, limit, settings, out, name=name, ci=ci)
    console.print(f"wrote [bold]{out_dir / BENCH_JSON}[/], {BENCH_MD}" + (", plots" if doc.get("plots") else ""))
    failed = results.failures(doc)
    for line in failed:
        console.print(f"[red]failed[/] {escape(line)}", highlight=False, soft_wrap=True)
    none_ok = no_row_ok(doc)
    if none_ok:
        raise CxrError(none_ok)  # exit 1: nothing was measured, though bench.json records each error
    if failed:
        console.print(f"[yellow]{len(failed)} of {len(doc['results'])} rows failed; the others ran[/]")


def parse_options(items: list[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CxrError(f"--delegate-option {item}: expected KEY=VALUE")
        out.append((key.strip(), value.strip()))
    return tuple(out)


def execute(source, data, split, limit, settings, out, name=None, ci=2000):
    from cxredge.edge import clinical_tables, device, ood_flags, results, sources, validation
    from cxredge.edge.bench import run_bench
    from cxredge.edge.clinical_plots import clinical_plots
    from cxredge.edge.dataset import load_split
    from cxredge.edge.plots import bench_plots
    from cxredge.edge.runtime import find_runtime

    t_start = time.perf_counter()
    runtime = find_runtime()
    ds, where = sources.eval_dataset(source, data, split)
    n_split = len(ds.paths(split))
    used = f"{n_split if limit is None else min(limit, n_split)} of {n_split}"
    console.print(f"evaluating on {used} {split} images of {where}" + (f" (--limit {limit})" if limit else ""),
                  highlight=False, soft_wrap=True)
    out_dir = out or source.run_dir or Path(".")
    with bar() as progress:
        task = progress.add_task(f"decoding {split} images", total=len(ds.paths(split)) if limit is None else limit)
        loaded = load_split(ds, split, limit=limit, progress=lambda n: progress.advance(task, n))
        outcome = run_bench(source.entries, loaded.x, loaded.y, list(ds.classes), settings, runtime,
                            ProgressAdapter(progress))
    counts = {c: int((loaded.y == i).sum()) for i, c in enumerate(ds.classes)}
    missing = [c for c, n in counts.items() if n == 0]
    if missing:
        console.print(f"[yellow]note[/] no images of {', '.join(missing)}: their sensitivity, F1 and AUC are null",
                      highlight=False)
    dataset = {"source": where, "path": str(ds.root), "split": split, "n": int(len(loaded.y)),
               "classes": list(ds.classes), "limit": limit, "name": name or dataset_name(ds.root),
               "layout": ds.layout, "missing_classes": missing, "counts": counts}
    doc = results.bench_document(device.device_info(runtime), settings.to_dict(), dataset, outcome.models,
                                 outcome.rows)
    doc["origin"] = source.origin
    from cxredge.edge.fingerprint import annotate

    annotate(doc, loaded.paths, loaded.y, outcome.predictions, list(ds.classes))  # image ids, predictions
    validation.attach(doc, outcome, loaded.y, list(ds.classes), resamples=ci)  # sens/spec, AUC, CIs
    ood_flags.attach(doc, source.entries, loaded.x, loaded.paths, ds.root)  # OOD guard: bench.json `ood`
    plots, note = bench_plots(doc, out_dir)
    plots += clinical_plots(doc, out_dir, doc["dataset"]["name"])  # ROC + reliability per model
    doc["plots"] = [p.name for p in plots]
    if note:
        doc["notes"] = doc["notes"] + [note]
        console.print(note)
    doc["wall_s"] = round(time.perf_counter() - t_start, 2)
    results.write_bench(out_dir, doc, doc["plots"])
    console.print(results.rich_table(doc, width=console.width))
    console.print(clinical_tables.rich_table(doc))
    for line in ood_flags.bench_lines(doc["ood"]):
        console.print(line, highlight=False, soft_wrap=True)
    return doc, out_dir


def dataset_name(root: Path) -> str:
    """A dataset's default name: its folder's name (the parent's for DIR/test or DIR/val)."""
    root = Path(root).resolve()
    return root.parent.name if root.name in SPLITS else root.name


class ProgressAdapter:
    """run_bench's progress protocol (start / advance) on one rich task."""

    def __init__(self, progress):
        self.progress = progress
        self.task = progress.add_task("bench", total=1)

    def start(self, description: str, total: int) -> None:
        self.progress.reset(self.task, total=total, description=description)

    def advance(self, n: int = 1) -> None:
        self.progress.advance(self.task, n)
