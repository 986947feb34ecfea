"""cxredge bench: accuracy and latency of every .tflite of a run, of given models, or of a bundle. TF-free."""
from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from cxredge.cli.bench_common import bar, dataset_name, no_row_ok, resolve_source
from cxredge.cli.bench_remote import REMOTE, REMOTE_HELP
from cxredge.cli.common import check_out_dir, console, handle_errors, split_ints, split_list
from cxredge.errors import CxrError
from cxredge.formats import BENCH_JSON, BENCH_MD
from cxredge.paths import DEFAULT_RUN

MIN_CI, MAX_CI = 100, 100_000  # fewer resamples give a noisy 95% interval; more only cost time


@handle_errors
def bench(
    models: Optional[List[Path]] = typer.Argument(None, metavar="[MODEL.tflite|DIR ...|BUNDLE.zip]",
                                                  help="Models, folders of models, or one bundle (default: --run)."),
    run: Optional[Path] = typer.Option(None, "--run",
                                       help=f"Run folder (default {DEFAULT_RUN} when no MODEL is given)."),
    data: Optional[Path] = typer.Option(None, "--data",
                                        help="Labelled images (default: the bundle's test images or the run's "
                                             "dataset). An external test set: DIR/test/<class>/ or DIR/<class>/ "
                                             "(every image is test); "
                                             "class folders are matched to the model's labels by name."),
    split: str = typer.Option("test", "--split", help="train | val | test | all."),
    name: Optional[str] = typer.Option(None, "--name", help="Name of the dataset in bench.json and the report "
                                       "(default: the folder's name)."),
    ci: int = typer.Option(2000, "--ci", help="Bootstrap resamples for the 95% confidence intervals: "
                           "0 (none) or 100 to 100000."),
    threads: str = typer.Option("1", "--threads", help="Thread counts, e.g. 1,2,4."),
    delegate: str = typer.Option("xnnpack", "--delegate",
                                 help="xnnpack | none | edgetpu | gpu | PATH.so, comma-separated."),
    delegate_option: Optional[List[str]] = typer.Option(None, "--delegate-option",
                                                        help="KEY=VALUE for external delegates (repeatable)."),
    runs: int = typer.Option(100, "--runs", help="Timed invokes per row."),
    warmup: int = typer.Option(10, "--warmup", help="Untimed invokes before timing."),
    limit: Optional[int] = typer.Option(None, "--limit", help="At most N images (stratified) for accuracy."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable images (listed in bench.json "
                                  "dataset.skipped) and bench the rest, instead of stopping (as audit and train)."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Labels for bare .tflite files (one per line)."),
    out: Optional[Path] = typer.Option(None, "--out",
                                       help="Where bench.json/md and plots go (default: the run folder, else .)."),
    remote: Optional[List[str]] = typer.Option(None, "--remote", rich_help_panel=REMOTE, help=REMOTE_HELP["remote"]),
    remote_python: Optional[str] = typer.Option(None, "--remote-python", rich_help_panel=REMOTE,
                                                help=REMOTE_HELP["python"]),
    remote_venv: Optional[str] = typer.Option(None, "--remote-venv", rich_help_panel=REMOTE, help=REMOTE_HELP["venv"]),
    remote_install: Optional[str] = typer.Option(None, "--remote-install", rich_help_panel=REMOTE,
                                                 help=REMOTE_HELP["install"]),
    remote_env: Optional[List[str]] = typer.Option(None, "--remote-env", rich_help_panel=REMOTE,
                                                   help=REMOTE_HELP["env"]),
    remote_prefix: Optional[str] = typer.Option(None, "--remote-prefix", rich_help_panel=REMOTE,
                                                help=REMOTE_HELP["prefix"]),
    ssh_option: Optional[List[str]] = typer.Option(None, "--ssh-option", rich_help_panel=REMOTE,
                                                   help=REMOTE_HELP["ssh_option"]),
    ssh_config: Optional[Path] = typer.Option(None, "--ssh-config", rich_help_panel=REMOTE,
                                              help=REMOTE_HELP["ssh_config"]),
) -> None:
    """Bench accuracy (vs the labels) and latency (init, first, median/p90/p99) of TFLite models, without TensorFlow."""
    from cxredge.edge.bench import results
    from cxredge.edge.bench.measure import BenchSettings
    from cxredge.edge.runtime.interpreter import check_threads

    settings = BenchSettings(threads=tuple(split_ints(threads, "--threads")),
                             delegates=tuple(split_list(delegate, "--delegate")),
                             delegate_options=parse_options(delegate_option or []), runs=runs, warmup=warmup)
    if limit is not None and limit < 1:
        raise CxrError(f"--limit {limit}: must be >= 1")
    if ci != 0 and not MIN_CI <= ci <= MAX_CI:
        raise CxrError(f"--ci {ci}: bootstrap resamples must be 0 (no confidence intervals) or {MIN_CI} to {MAX_CI}")
    check_out_dir(out)
    if remote:  # the models and the chosen images go to each device over SSH (cxredge/remote/)
        if skip_bad:
            raise CxrError("--skip-bad: not available with --remote yet (the images are chosen here and must all "
                           "decode); drop the unreadable files or bench without --remote")
        from cxredge.cli.bench_remote import bench_remote, remote_settings

        rs = remote_settings(remote, remote_python, remote_venv, remote_install, remote_env, ssh_option, ssh_config,
                             remote_prefix)
        return bench_remote(models or [], run, labels, data, split, limit, settings, out, rs, name=name, ci=ci)
    for t in settings.threads:  # here; a remote device checks its own --threads against its own cores
        check_threads(t)
    with contextlib.ExitStack() as stack:
        source = resolve_source(models or [], run, labels, stack, out)
        doc, out_dir = execute(source, data, split, limit, settings, out, name=name, ci=ci, skip_bad=skip_bad)
    failed = results.failures(doc)
    for line in failed:
        console.print(f"[red]failed[/] {escape(line)}", highlight=False, soft_wrap=True)
    none_ok = no_row_ok(doc)
    if none_ok:  # exit 1: nothing was measured; bench.failed.json records each error, bench.json is kept
        raise CxrError(none_ok)
    console.print(f"wrote [bold]{escape(str(out_dir / BENCH_JSON))}[/], {BENCH_MD}"
                  + (", plots" if doc.get("plots") else ""), highlight=False, soft_wrap=True)
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


def execute(source, data, split, limit, settings, out, name=None, ci=2000, skip_bad=False):
    from cxredge.edge.bench import results
    from cxredge.edge.bench import store as bench_store
    from cxredge.edge.bench.measure import machine_load, run_bench
    from cxredge.edge.data import sources
    from cxredge.edge.data.dataset import load_split
    from cxredge.edge.evaluate import validation
    from cxredge.edge.ood import flags as ood_flags
    from cxredge.edge.render import clinical_tables
    from cxredge.edge.render.clinical_plots import clinical_plots
    from cxredge.edge.render.plots import bench_plots
    from cxredge.edge.runtime import device
    from cxredge.edge.runtime.interpreter import find_runtime
    from cxredge.io import shown

    t_start = time.perf_counter()
    load = {"before": machine_load()}
    runtime = find_runtime()
    ds, where = sources.eval_dataset(source, data, split)
    n_split = len(ds.paths(split))
    used = f"{n_split if limit is None else min(limit, n_split)} of {n_split}"
    console.print(f"evaluating on {used} {split} images of {escape(str(where))}"
                  + (f" (--limit {limit})" if limit else ""),
                  highlight=False, soft_wrap=True)
    with bar() as progress:
        task = progress.add_task(f"decoding {split} images", total=len(ds.paths(split)) if limit is None else limit)
        loaded = load_split(ds, split, skip_bad=skip_bad, limit=limit, progress=lambda n: progress.advance(task, n))
        outcome = run_bench(source.entries, loaded.x, loaded.y, list(ds.classes), settings, runtime,
                            ProgressAdapter(progress))
    counts = {c: int((loaded.y == i).sum()) for i, c in enumerate(ds.classes)}
    missing = [c for c, n in counts.items() if n == 0]
    if missing:
        console.print(f"[yellow]note[/] no images of {escape(', '.join(missing))}: their sensitivity, F1 "
                      f"and AUC are null",
                      highlight=False)
    own = bench_store.is_run_data(source, data)
    dataset = {"source": where, "path": str(ds.root), "split": split, "n": int(len(loaded.y)),
               "classes": list(ds.classes), "limit": limit, "name": name or dataset_name(ds.root),
               "layout": ds.layout, "missing_classes": missing, "counts": counts, "internal": own}
    if skip_bad:  # bench.json says which files the numbers leave out
        dataset["skipped"] = [shown(p) for p in loaded.skipped]
        if loaded.skipped:
            console.print(f"[yellow]skipped {len(loaded.skipped)} unreadable image(s)[/] (--skip-bad), first: "
                          f"{escape(shown(loaded.skipped[0]))}", highlight=False, soft_wrap=True)
    doc = results.bench_document(device.device_info(runtime), settings.to_dict(), dataset, outcome.models,
                                 outcome.rows)
    doc["origin"] = source.origin
    doc["machine_load"] = load  # load average before / after, governor: is the latency to be trusted?
    from cxredge.edge.formats.fingerprint import annotate

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


class ProgressAdapter:
    """run_bench's progress protocol (start / advance) on one rich task."""

    def __init__(self, progress):
        self.progress = progress
        self.task = progress.add_task("bench", total=1)

    def start(self, description: str, total: int) -> None:
        self.progress.reset(self.task, total=total, description=description)

    def advance(self, n: int = 1) -> None:
        self.progress.advance(self.task, n)
