"""The local bench pipeline: check the chosen images, bench every model, write bench.json/md and plots. TF-free.

The split is never held decoded: one check pass (`dataset.index_split`) finds the unreadable files and
gathers the OOD guard's statistics; each model's accuracy pass decodes it again in batches
(`Split.stream()`). What stays per image: its path, label, each model's outputs and its OOD statistics.

`cxredge bench` calls run_local_bench once; the progress bars and the console lines are passed in (a
`progress()` context manager with the rich Progress calls add_task / advance / reset, and `say`, called as
rich's console.print), so this module never imports the CLI. Without them it runs silently.
"""
from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from typing import Callable

from rich.markup import escape


class NullProgress:
    """The progress protocol (add_task / advance / reset) that shows nothing."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def add_task(self, description: str, total: float | None = None, **kwargs) -> int:
        return 0

    def advance(self, task, n: float = 1) -> None:
        return None

    def reset(self, task, **kwargs) -> None:
        return None

    def update(self, task, **kwargs) -> None:
        return None


def quiet(*args, **kwargs) -> None:
    """A `say` that prints nothing."""


class ProgressAdapter:
    """run_bench's progress protocol (start / advance) on one rich task."""

    def __init__(self, progress):
        self.progress = progress
        self.task = progress.add_task("bench", total=1)

    def start(self, description: str, total: int) -> None:
        self.progress.reset(self.task, total=total, description=description)

    def advance(self, n: int = 1) -> None:
        self.progress.advance(self.task, n)


def evaluate_split(ds, split: str, entries, settings, runtime, skip_bad: bool = False, limit: int | None = None,
                   bar=None):
    """The data part of a bench: the split checked once (skips, the OOD guard's statistics), then every
    model's latency rows and its accuracy over the split's stream. Returns (Split, BenchOutcome, Statistics)."""
    from cxredge.edge.bench.measure import run_bench
    from cxredge.edge.ood.guard import checked_split

    bar = bar or NullProgress()
    task = bar.add_task(f"decoding {split} images", total=len(ds.paths(split)) if limit is None else limit)
    index, stats = checked_split(ds, split, skip_bad=skip_bad, limit=limit, progress=lambda n: bar.advance(task, n))
    outcome = run_bench(entries, index.stream(), index.y, list(ds.classes), settings, runtime, ProgressAdapter(bar))
    return index, outcome, stats


def run_local_bench(source, data, split, limit, settings, out, name=None, ci=2000, skip_bad=False,
                    progress: Callable[[], contextlib.AbstractContextManager] = NullProgress,
                    say: Callable[..., None] = quiet, width: int | None = None):
    """Bench `source`'s models on `split` of `data` (default: the run's or bundle's images); write the bench
    unit to `out` (default: <run>/bench/<dataset>/). Returns (bench document, folder written)."""
    from cxredge.edge.bench import results
    from cxredge.edge.bench import store as bench_store
    from cxredge.edge.bench.measure import machine_load
    from cxredge.edge.data import sources
    from cxredge.edge.evaluate import validation
    from cxredge.edge.formats.fingerprint import annotate
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
    say(f"evaluating on {used} {split} images of {escape(str(where))}"
        + (f" (--limit {limit})" if limit else ""),
        highlight=False, soft_wrap=True)
    with progress() as bar:
        loaded, outcome, ood_stats = evaluate_split(ds, split, source.entries, settings, runtime, skip_bad, limit, bar)
    counts = {c: int((loaded.y == i).sum()) for i, c in enumerate(ds.classes)}
    missing = [c for c, n in counts.items() if n == 0]
    if missing:
        say(f"[yellow]note[/] no images of {escape(', '.join(missing))}: their sensitivity, F1 "
            f"and AUC are null",
            highlight=False)
    own = bench_store.is_run_data(source, data)
    dataset = {"source": where, "path": str(ds.root), "split": split, "n": int(len(loaded.y)),
               "classes": list(ds.classes), "limit": limit, "name": name or bench_store.dataset_name(ds.root),
               "layout": ds.layout, "missing_classes": missing, "counts": counts, "internal": own}
    if skip_bad:  # bench.json says which files the numbers leave out
        dataset["skipped"] = [shown(p) for p in loaded.skipped]
        if loaded.skipped:
            say(f"[yellow]skipped {len(loaded.skipped)} unreadable image(s)[/] (--skip-bad), first: "
                f"{escape(shown(loaded.skipped[0]))}", highlight=False, soft_wrap=True)
    doc = results.bench_document(device.device_info(runtime), settings.to_dict(), dataset, outcome.models,
                                 outcome.rows)
    doc["origin"] = source.origin
    doc["machine_load"] = load  # load average before / after, governor: is the latency to be trusted?
    annotate(doc, loaded.paths, loaded.y, outcome.predictions, list(ds.classes))  # image ids, predictions
    validation.attach(doc, outcome, loaded.y, list(ds.classes), resamples=ci)  # sens/spec, AUC, CIs
    ood_flags.attach(doc, source.entries, ood_stats, loaded.paths, ds.root)  # OOD guard: bench.json `ood`
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
            say(note)
        doc["wall_s"] = round(time.perf_counter() - t_start, 2)
        if bench_store.no_row_ok(doc):  # nothing measured: the previous good bench stays where it is
            bench_store.write_failed(out_dir, doc)
        else:
            results.write_bench(staged, doc, doc["plots"])
            if out is None:
                bench_store.commit_folder(staged, out_dir)
            else:
                bench_store.commit_files(staged, out_dir, bench_store.previous_plots(out_dir))
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    say(results.rich_table(doc, width=width))
    if any(r.get("latency_noisy") for r in doc["results"]):
        say(f"[yellow]noisy latency[/]: {results.load_line(doc)}; p90/median > {results.NOISY_SPREAD} even "
            "after one re-measurement: no speed-up computed from those rows", highlight=False, soft_wrap=True)
    say(clinical_tables.rich_table(doc))
    for line in ood_flags.bench_lines(doc["ood"]):
        say(line, highlight=False, soft_wrap=True)
    return doc, out_dir
