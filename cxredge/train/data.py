"""Dataset folder -> decoded splits, with leakage and corrupt-image accounting. TF-free.

The scanning and decoding live in cxredge.edge.dataset (shared with bench); this module adds what
training needs on top: a rich progress bar, the leakage count, the skipped-image count.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cxredge.edge.dataset import Dataset, Loaded, count_leaks, load_split, scan
from cxredge.edge.table import DataOptions
from cxredge.vocab import SPLITS


@dataclass
class TrainData:
    dataset: Dataset
    splits: dict[str, Loaded]
    leaks: dict[str, int]

    @property
    def skipped(self) -> list[str]:
        return [p for s in SPLITS for p in self.splits[s].skipped]

    @property
    def classes(self) -> tuple[str, ...]:
        return self.dataset.classes


def progress_bar(console: Console) -> Progress:
    return Progress(TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console, transient=False)


def load_data(root: str | Path, seed: int = 0, skip_bad: bool = False, console: Console | None = None,
              options: DataOptions | None = None) -> TrainData:
    """Scan, decode every split, count skipped images and cross-split duplicates (leakage)."""
    console = console or Console()
    ds = scan(root, seed=seed, options=options)
    report_data(ds, console)
    splits: dict[str, Loaded] = {}
    with progress_bar(console) as bar:
        for split in SPLITS:
            task = bar.add_task(f"decode {split}", total=len(ds.paths(split)), info="")
            splits[split] = load_split(ds, split, skip_bad=skip_bad, progress=lambda n, t=task: bar.advance(t, n))
    data = TrainData(ds, splits, count_leaks(splits))
    if data.skipped:
        console.print(f"[yellow]warning:[/] skipped {len(data.skipped)} unreadable image(s) (--skip-bad), "
                      f"first: {data.skipped[0]}")
    if data.leaks:
        total = sum(data.leaks.values())
        pairs = ", ".join(f"{k}: {v}" for k, v in data.leaks.items())
        console.print(f"[yellow]warning: leakage:[/] {total} image(s) with identical pixels sit in two splits "
                      f"({pairs}); test metrics will be optimistic")
    return data


def report_data(ds: Dataset, console: Console) -> None:
    """What a label table dropped, how patients were split, and patients found in two splits (leakage)."""
    table, patients = (ds.info or {}).get("table"), (ds.info or {}).get("patients")
    if table:
        console.print(f"label table {table['file']}: {table['kept']} of {table['rows']} rows kept "
                      f"({table['dropped_by_label_map']} dropped by --label-map, {table['dropped_multi_label']} "
                      f"multi-label, {table['duplicate_rows_merged']} duplicate rows merged)")
    if patients:
        console.print(f"patients: {patients['patients']} ({patients['source']}); split {patients['split']}")
    leaks = ds.patient_leaks()
    if leaks:
        pairs = ", ".join(f"{k}: {v}" for k, v in leaks.items())
        console.print(f"[yellow]warning: leakage:[/] {sum(leaks.values())} patient(s) have images in two splits "
                      f"({pairs}); test metrics will be optimistic")
