"""cxredge bench: accuracy and latency of every .tflite of a run, of given models, or of a bundle. TF-free."""
from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from cxredge.cli.common import console, handle_errors, split_ints, split_list
from cxredge.cli.bench_remote import REMOTE, REMOTE_HELP
from cxredge.errors import CxrError
from cxredge.paths import DEFAULT_RUN


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
    failed = results.failures(doc)
    for line in failed:
        console.print(f"[red]failed[/] {escape(line)}", highlight=False, soft_wrap=True)
    none_ok = no_row_ok(doc)
    if none_ok:  # exit 1: nothing was measured; bench.failed.json records each error, bench.json is kept
        raise CxrError(none_ok)
    console.print(f"wrote [bold]{escape(str(out_dir / 'bench.json'))}[/], bench.md"
                  + (", plots" if doc.get("plots") else ""), highlight=False, soft_wrap=True)
    if failed:
        console.print(f"[yellow]{len(failed)} of {len(doc['results'])} rows failed; the others ran[/]")


def no_row_ok(doc: dict) -> str | None:
    """The one error line when no row of a bench ran (every row failed, or there was none), else None."""
    rows = doc.get("results") or []
    if any(r.get("status") == "ok" for r in rows):
        return None
    if not rows:
        return "no row was benched: nothing measured"
    first = next((r for r in rows if r.get("error")), rows[0])
    where = f"{first['model']} {Path(str(first['delegate'])).name}"
    return (f"all {len(rows)} rows failed, nothing measured (first: {where} "
            f"x{first['threads']}: {first.get('error')}); bench.failed.json records each error, "
            "a previous bench.json is kept")


def parse_options(items: list[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CxrError(f"--delegate-option {item}: expected KEY=VALUE")
        out.append((key.strip(), value.strip()))
    return tuple(out)


def resolve_source(models: list[Path], run: Path | None, labels: Path | None, stack: contextlib.ExitStack):
    from cxredge.edge import bundle, sources

    if models and run is not None:
        raise CxrError("give either --run DIR or MODEL/BUNDLE arguments, not both")
    bundles = [m for m in models if bundle.is_bundle(m)]
    if bundles:
        if len(models) != 1:
            raise CxrError(f"{bundles[0]}: a bundle is benched on its own (no other MODEL arguments)")
        dest = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cxredge-bundle-")))
        bundle.open_bundle(bundles[0], dest)
        src = sources.from_run(dest, labels)
        src.origin, src.run_dir = "bundle", None
        return src
    if models:
        return sources.from_paths(models, labels)
    return sources.from_run(run or DEFAULT_RUN, labels)


def execute(source, data, split, limit, settings, out, name=None, ci=2000):
    from cxredge.edge import bench_store, clinical_tables, device, ood_flags, results, sources, validation
    from cxredge.edge.bench import machine_load, run_bench
    from cxredge.edge.clinical_plots import clinical_plots
    from cxredge.edge.dataset import load_split
    from cxredge.edge.plots import bench_plots
    from cxredge.edge.runtime import find_runtime

    t_start = time.perf_counter()
    load = {"before": machine_load()}
    runtime = find_runtime()
    ds, where = sources.eval_dataset(source, data, split)
    n_split = len(ds.paths(split))
    used = f"{n_split if limit is None else min(limit, n_split)} of {n_split}"
    console.print(f"evaluating on {used} {split} images of {where}" + (f" (--limit {limit})" if limit else ""),
                  highlight=False, soft_wrap=True)
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
    own = is_run_data(source, data)
    dataset = {"source": where, "path": str(ds.root), "split": split, "n": int(len(loaded.y)),
               "classes": list(ds.classes), "limit": limit, "name": name or dataset_name(ds.root),
               "layout": ds.layout, "missing_classes": missing, "counts": counts, "internal": own}
    doc = results.bench_document(device.device_info(runtime), settings.to_dict(), dataset, outcome.models,
                                 outcome.rows)
    doc["origin"] = source.origin
    doc["machine_load"] = load  # load average before / after, governor: is the latency to be trusted?
    from cxredge.edge.fingerprint import annotate

    annotate(doc, loaded.paths, loaded.y, outcome.predictions, list(ds.classes))  # image ids, predictions
    validation.attach(doc, outcome, loaded.y, list(ds.classes), resamples=ci)  # sens/spec, AUC, CIs
    ood_flags.attach(doc, source.entries, loaded.x, loaded.paths, ds.root)  # OOD guard: bench.json `ood`
    load["after"] = machine_load()
    place = bench_store.dataset_folder_name(own, split, name, ds.root)  # <run>/bench/<place>/: one per dataset
    out_dir = out if out is not None else bench_store.bench_place(source.run_dir or Path("."), place, ds.root, split)
    staged = bench_store.stage(out_dir)  # bench.json, bench.md and plots are one unit (bench_store.py)
    try:
        plots, note = bench_plots(doc, staged)
        plots += clinical_plots(doc, staged, doc["dataset"]["name"])  # ROC + reliability per model
        doc["plots"] = [p.name for p in plots]
        if note:
            doc["notes"] = doc["notes"] + [note]
            console.print(note)
        doc["wall_s"] = round(time.perf_counter() - t_start, 2)
        if no_row_ok(doc):  # nothing measured: the previous good bench stays where it is
            bench_store.write_failed(out_dir, doc)
        else:
            results.write_bench(staged, doc, doc["plots"])
            if out is None:
                bench_store.commit_folder(staged, out_dir)
            else:
                bench_store.commit_files(staged, out_dir, bench_store.previous_plots(out_dir))
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    console.print(results.rich_table(doc, width=console.width))
    if any(r.get("latency_noisy") for r in doc["results"]):
        console.print(f"[yellow]noisy latency[/]: {results.load_line(doc)}; p90/median > {results.NOISY_SPREAD} even "
                      "after one re-measurement: no speed-up computed from those rows", highlight=False, soft_wrap=True)
    console.print(clinical_tables.rich_table(doc))
    for line in ood_flags.bench_lines(doc["ood"]):
        console.print(line, highlight=False, soft_wrap=True)
    return doc, out_dir


def is_run_data(source, data: Path | None) -> bool:
    """True when the images are the run's own dataset (run.json data.path), not another folder."""
    if data is None:  # the run's dataset, or the bundle's / run's own test images
        return True
    path = ((source.run or {}).get("data") or {}).get("path")
    return bool(path) and Path(path).is_dir() and Path(data).resolve() == Path(path).resolve()


def dataset_name(root: Path) -> str:
    """A dataset's default name: its folder's name (the parent's for DIR/test or DIR/val)."""
    root = Path(root).resolve()
    return root.parent.name if root.name in ("test", "val", "train") else root.name


def bar():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


class ProgressAdapter:
    """run_bench's progress protocol (start / advance) on one rich task."""

    def __init__(self, progress):
        self.progress = progress
        self.task = progress.add_task("bench", total=1)

    def start(self, description: str, total: int) -> None:
        self.progress.reset(self.task, total=total, description=description)

    def advance(self, n: int = 1) -> None:
        self.progress.advance(self.task, n)
