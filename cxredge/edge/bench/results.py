"""bench.json and bench.md: write them, read them back, tabulate them. TF-free.

bench.json's contract (its keys, the row schema, the speed-up rule) is the bench section of
cxredge/formats.py (BENCH_FORMAT, BENCH_ROW_KEYS, fill_speedups).
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from cxredge import markdown as md
from cxredge.edge.render import clinical_tables
from cxredge.edge.render.document import fmt, md_table
from cxredge.errors import CxrError
from cxredge.formats import BENCH_FORMAT, BENCH_JSON, BENCH_MD, NOISY_SPREAD, latency_spread
from cxredge.io import read_json, write_json, write_text

NOTES = [
    "latency_ms: init = interpreter + delegate + allocate_tensors; first = first invoke(); median/p90/p99/mean/std "
    "over `runs` invoke() calls after `warmup`, each timed alone with perf_counter_ns, input set once.",
    "peak_rss_mb is the process-wide peak (getrusage ru_maxrss) when the row finished: it only grows and "
    "includes every model loaded before; rss_mb is the resident size at that moment.",
    "accuracy, macro_* and agreement_with_float are computed once per model (on models[key].evaluated_with) "
    "and copied to each of its ok rows.",
    "latency_check: a row whose p90/median exceeds the threshold is timed once more and the run with the lower "
    "p90 kept; latency_noisy = still above it. No speed-up is computed from a noisy row (speedup_withheld). "
    "machine_load: load average and cpufreq governor before and after the bench.",
]


def bench_document(device: dict, settings: dict, dataset: dict, models: dict, rows: list[dict],
                   wall_s: float | None = None) -> dict:
    return {"format": BENCH_FORMAT, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "device": device, "settings": settings, "dataset": dataset, "models": models, "results": rows,
            "wall_s": wall_s, "notes": NOTES}


def read_bench(path: str | Path) -> dict:
    doc = read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list) or "device" not in doc:
        raise CxrError(f"--bench {path}: not a cxredge bench.json (needs 'device' and 'results')")
    return doc


def spread(r: dict) -> float | None:
    """p90 / median of a row's latency, where both are known (formats.latency_spread)."""
    return latency_spread(r.get("latency_ms"))


def noisy(r: dict) -> bool:
    """A row flagged by bench (latency_noisy), or, in an older bench.json, one whose p90/median is high."""
    if r.get("status") != "ok":
        return False
    if r.get("latency_noisy") is not None:
        return bool(r["latency_noisy"])
    s = spread(r)
    return s is not None and s > NOISY_SPREAD


def row_cells(r: dict) -> list[str]:
    lat = r.get("latency_ms") or {}
    status = r["status"] if r["status"] == "ok" else f"failed: {r.get('error') or ''}"
    if r["status"] == "ok" and r.get("latency_noisy"):
        status = f"ok, noisy (p90/median {(r.get('latency_check') or {}).get('spread')})"
    return [r["model"], r["delegate"], str(r["threads"]), f"{r['size_bytes'] / 1e6:.2f}",
            fmt(r.get("accuracy")), fmt(r.get("macro_f1")), fmt(r.get("agreement_with_float")),
            fmt(lat.get("init"), ".1f"), fmt(lat.get("first"), ".2f"), fmt(lat.get("median"), ".2f"),
            fmt(lat.get("p90"), ".2f"), fmt(lat.get("p99"), ".2f"), fmt(lat.get("std"), ".2f"),
            fmt(r.get("speedup_vs_float32"), ".2f") + ("x" if r.get("speedup_vs_float32") else ""),
            fmt(r.get("peak_rss_mb"), ".0f"), status]


HEADERS = ["model", "delegate", "threads", "MB", "accuracy", "macro F1", "agree fp32", "init ms", "first ms",
           "median ms", "p90 ms", "p99 ms", "std ms", "vs fp32", "peak RSS MB", "status"]


def device_line(device: dict) -> str:
    temp = device.get("temperature_c")
    t = f", {max(temp.values()):.0f} C" if temp else ""
    throttled = device.get("throttled")
    th = f", throttled {throttled['raw']}" if throttled else ""
    return (f"{device.get('cpu_model')} ({device.get('machine')}, {device.get('cores')} cores), {device.get('os')}, "
            f"Python {device.get('python')}, {device.get('runtime')} {device.get('runtime_version')}{t}{th}")


def load_line(doc: dict) -> str:
    """Load average before -> after and the governor; and how many rows were flagged noisy."""
    load = doc.get("machine_load") if isinstance(doc.get("machine_load"), dict) else {}
    before, after = (load.get("before") or {}), (load.get("after") or {})
    avg = lambda x: "/".join(f"{v:.2f}" for v in x) if isinstance(x, list) and x else "?"  # noqa: E731
    noisy = sum(1 for r in doc.get("results") or [] if r.get("latency_noisy"))
    return (f"load average (1/5/15 min) {avg(before.get('loadavg'))} before, {avg(after.get('loadavg'))} after, "
            f"{before.get('cores') or '?'} cores; governor {before.get('cpu_governor') or 'not readable'}; "
            f"{noisy} row(s) with noisy latency")


def bench_markdown(doc: dict, plots: list[str] | None = None) -> str:
    ds = doc.get("dataset", {})
    s = doc.get("settings", {})
    parts = [
        "# cxredge bench", "",
        f"- device: {md.text(device_line(doc['device']))}",
        f"- data: {md.text(ds.get('source'))}, split {md.code(ds.get('split'))}, {ds.get('n')} images, "
        f"classes {md.text(', '.join(ds.get('classes', [])))}",
        f"- timing: {s.get('warmup')} warm-up + {s.get('runs')} timed invoke() per row, threads {s.get('threads')}, "
        f"delegates {s.get('delegates')}" + (f", wall time {doc['wall_s']:.1f} s" if doc.get("wall_s") else ""),
        f"- machine load: {load_line(doc)}",
        "", md_table(HEADERS, [row_cells(r) for r in doc["results"]]), "",
        "## Per class (recall / precision / F1)", "",
    ]
    classes = ds.get("classes", [])
    per = [[k] + [" / ".join(fmt(m["per_class"].get(c, {}).get(v)) for v in ("recall", "precision", "f1"))
                  for c in classes] for k, m in doc.get("models", {}).items()]
    parts += [md_table(["model"] + classes, per), ""]
    parts += clinical_tables.markdown(doc)
    parts += [md.image(p, p) for p in plots or []]
    parts += ["", "## Notes", ""] + [f"- {md.text(n)}" for n in doc.get("notes", [])]
    return "\n".join(parts) + "\n"


def write_bench(out_dir: Path, doc: dict, plots: list[str] | None = None) -> tuple[Path, Path]:
    return write_json(out_dir / BENCH_JSON, doc), write_text(out_dir / BENCH_MD, bench_markdown(doc, plots))


RICH_COLUMNS = ["model", "delegate", "threads", "MB", "accuracy", "macro F1", "agree fp32", "first ms",
                "median ms", "p90 ms", "vs fp32", "status"]
SHORT = {"threads": "thr", "accuracy": "acc", "macro F1": "F1", "agree fp32": "agree", "first ms": "first",
         "median ms": "median", "p90 ms": "p90", "vs fp32": "x fp32"}


COMPACT = ["model", "delegate", "threads", "accuracy", "agree fp32", "median ms", "vs fp32", "status"]


def rich_table(doc: dict, title: str = "cxredge bench", width: int = 120):
    """A table that fits `width` (errors are listed under it by `failures`; bench.md has every column)."""
    from rich import box
    from rich.table import Table

    table = Table(title=title + " (ms)", caption=device_line(doc["device"]), box=box.SIMPLE_HEAD, padding=(0, 1),
                  pad_edge=False)
    columns = RICH_COLUMNS if width >= 104 else COMPACT
    idx = [HEADERS.index(h) for h in columns]
    longest = max([len(r["model"]) for r in doc["results"]] + [5])
    for h in columns:
        table.add_column(SHORT.get(h, h), justify="left" if h in ("model", "delegate", "status") else "right",
                         no_wrap=h == "model", overflow="fold", min_width=longest if h == "model" else None)
    for r in doc["results"]:
        cells = row_cells(r)
        row = [cells[i] for i in idx]
        row[1] = Path(row[1]).name
        row[-1] = ("[yellow]noisy[/]" if r.get("latency_noisy") else "ok") if r["status"] == "ok" else "[red]failed[/]"
        table.add_row(*row)
    return table


def failures(doc: dict) -> list[str]:
    return [f"{r['model']} {r['delegate']} x{r['threads']}: {r.get('error')}" for r in doc["results"]
            if r["status"] != "ok"]
