"""Dataset folder -> the file lists training streams from, with leakage and corrupt-image accounting. TF-free.

The scanning and the check pass live in cxredge.edge.data.dataset (shared with bench and quantize): every
image is decoded once, in a thread pool (edge/data/stream.py), to find the unreadable ones and hash the
pixels (leakage), and to hand each decoded image to an optional `on_image` callback (the pre-training
audit); no split is kept in memory: what stays per image is its path, label and pixel hash. Training
decodes again in batches.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cxredge.edge.data.dataset import Dataset, OnImage, Split, count_leaks, index_split, scan
from cxredge.edge.data.table import DataOptions
from cxredge.vocab import SPLITS


@dataclass
class TrainData:
    dataset: Dataset
    splits: dict[str, Split]
    leaks: dict[str, int]
    _fingerprint: str | None = None

    @property
    def skipped(self) -> list[str]:
        return [p for s in SPLITS for p in self.splits[s].skipped]

    @property
    def classes(self) -> tuple[str, ...]:
        return self.dataset.classes

    def fingerprint(self) -> str:
        """The dataset's sha256 (edge/data/dataset.py), computed once."""
        if self._fingerprint is None:
            self._fingerprint = self.dataset.fingerprint()
        return self._fingerprint


def progress_bar(console: Console, rate: bool = False) -> Progress:
    columns = [TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn()]
    if rate:
        columns.append(TextColumn("{task.fields[rate]}"))
    columns += [TimeRemainingColumn(), TextColumn("{task.fields[info]}")]
    return Progress(*columns, console=console, transient=False)


def load_data(root: str | Path, seed: int = 0, skip_bad: bool = False, console: Console | None = None,
              on_image: OnImage | None = None, options: DataOptions | None = None,
              ds: Dataset | None = None) -> TrainData:
    """Scan (or take `ds`, already scanned), check every image once, count skipped images and cross-split
    duplicates (leakage), and say what a label table dropped and how patients were split."""
    console = console or Console()
    ds = ds if ds is not None else scan(root, seed=seed, options=options)
    report_data(ds, console)
    splits: dict[str, Split] = {}
    with progress_bar(console) as bar:
        for split in SPLITS:
            task = bar.add_task(f"check {split}", total=len(ds.paths(split)), info="")
            splits[split] = index_split(ds, split, skip_bad, lambda n, t=task: bar.advance(t, n), on_image)
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
