"""Where a bench's files go, how they are written as one unit, and how a run's benches are found. TF-free.

Layout of a run folder (issue 24 item 2):
  <run>/bench/<dataset>/   one folder per labelled dataset benched: bench.json, bench.md and the plots.
                           The run's own images are named after the split (`test`, `val`, ...); another
                           folder after its name (or --name), made safe for a file name and de-duplicated
                           (`-2`, `-3`, ...) when that place already holds a bench of other images.
  <run>/devices/<label>/   what `cxredge bench --remote` brought back (cxredge/remote/session.py) for the
                           run's own split; another dataset in <run>/devices/<label>--<dataset>/.
  <run>/bench.json         the old layout: still read by `report`, never written.

One unit: the files are written into a hidden temporary folder next to the destination and swapped in
with renames, so plots never sit beside another bench's bench.json, and a bench that fails (every row
failed) never replaces a good one: its document goes to bench.failed.json and the good bench stays.
With an explicit --out DIR (which may hold other files) the unit is the set of bench files: the staged
files replace the old ones, old plots the new bench does not have are removed, bench.json goes last.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from cxredge import vocab
from cxredge.formats import BENCH_DIR, BENCH_JSON
from cxredge.io import read_json, write_json

FAILED = "bench.failed.json"
SPLITS = (*vocab.SPLITS, "all")  # folder names that are a split, not a dataset (DIR/test -> DIR)


def safe_name(name: str) -> str:
    """A dataset name as one safe path component: letters, digits, `.-_`; never empty, `.` or `..`."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", str(name)).strip(".-_")[:64]
    return text or "dataset"


def _identity(doc) -> tuple | None:
    ds = doc.get("dataset") if isinstance(doc, dict) else None
    if not isinstance(ds, dict) or not isinstance(ds.get("path"), str):
        return None
    return str(Path(ds["path"]).resolve()), ds.get("split")


def _holder(folder: Path) -> tuple | None:
    """The (dataset path, split) a bench folder holds, or None when it holds nothing readable."""
    for name in (BENCH_JSON, FAILED):
        if (folder / name).is_file():
            try:
                return _identity(read_json(folder / name))
            except Exception:  # an unreadable document: the place is taken, by something unknown
                return ("?", None)
    return None


def bench_place(base: Path, name: str, dataset_path: Path, split: str) -> Path:
    """<base>/bench/<name>, or the first <name>-N that is free or already holds these images."""
    me = (str(Path(dataset_path).resolve()), split)
    stem = safe_name(name)
    for i in range(1, 1000):
        folder = base / BENCH_DIR / (stem if i == 1 else f"{stem}-{i}")
        held = _holder(folder) if folder.is_dir() else None
        if held is None or held == me:
            return folder
    raise OSError(f"{base / BENCH_DIR}: no free place for dataset {stem}")


def is_run_data(source, data: Path | None) -> bool:
    """True when the images are the run's own dataset (run.json data.path), not another folder."""
    if data is None:  # the run's dataset, or the bundle's / run's own test images
        return True
    path = ((source.run or {}).get("data") or {}).get("path")
    return bool(path) and Path(path).is_dir() and Path(data).resolve() == Path(path).resolve()


def dataset_folder_name(is_run_data: bool, split: str, name: str | None, root: Path) -> str:
    """The place's name: --name, else the split for the run's own images, else the folder's name."""
    if name:
        return name
    if is_run_data:
        return split
    return dataset_name(root)


def stage(dest: Path) -> Path:
    """A fresh hidden folder next to `dest` to write a bench into."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))


def commit_folder(staged: Path, dest: Path) -> None:
    """Swap the staged folder in for `dest` (renames; on an error the old folder is put back)."""
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
        os.rmdir(old)
        os.replace(dest, old)
    try:
        os.replace(staged, dest)
    except OSError:
        if old is not None:
            os.replace(old, dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def commit_files(staged: Path, dest: Path, old_plots: list[str]) -> None:
    """Move the staged bench files into `dest` (which holds other files), bench.json last; remove the
    previous bench's plots that the new one does not have, and a stale bench.failed.json."""
    dest.mkdir(parents=True, exist_ok=True)
    names = sorted(p.name for p in staged.iterdir())
    for stale in set(old_plots) - set(names):
        if safe_name(stale) == stale and (dest / stale).is_file():
            (dest / stale).unlink()
    for n in [n for n in names if n != BENCH_JSON] + ([BENCH_JSON] if BENCH_JSON in names else []):
        os.replace(staged / n, dest / n)
    if (dest / FAILED).is_file():
        (dest / FAILED).unlink()
    shutil.rmtree(staged, ignore_errors=True)


def previous_plots(dest: Path) -> list[str]:
    try:
        doc = read_json(dest / BENCH_JSON) if (dest / BENCH_JSON).is_file() else {}
    except Exception:
        return []
    plots = doc.get("plots") if isinstance(doc, dict) else None
    return [p for p in plots if isinstance(p, str)] if isinstance(plots, list) else []


def write_failed(dest: Path, doc: dict) -> Path:
    """A bench that measured nothing: its document (each row's error) beside, never over, bench.json."""
    return write_json(dest / FAILED, doc)


def find_benches(run_dir: Path) -> list[Path]:
    """Every bench.json of a run: the old <run>/bench.json, <run>/bench/*/ (the run's test split first),
    then <run>/devices/*/."""
    def visible(folder: Path) -> list[Path]:  # not the hidden folders of a bench being written
        return [p for p in folder.glob(f"*/{BENCH_JSON}") if not p.parent.name.startswith(".")]

    found = [run_dir / BENCH_JSON] if (run_dir / BENCH_JSON).is_file() else []
    own = sorted(visible(run_dir / BENCH_DIR),
                 key=lambda p: (p.parent.name != "test", p.parent.name not in SPLITS, p.parent.name))
    return found + own + sorted(visible(run_dir / "devices"))


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
            f"a previous {BENCH_JSON} is kept")


def dataset_name(root: Path) -> str:
    """A dataset's default name: its folder's name (the parent's for DIR/test or DIR/val)."""
    root = Path(root).resolve()
    return root.parent.name if root.name in SPLITS else root.name
