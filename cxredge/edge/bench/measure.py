"""Accuracy and latency of .tflite models on this device. TF-free.

Timing method (docs/timing-method.md, as the TFLite benchmark tool does it):
  init   = interpreter construction + delegate + allocate_tensors
  first  = the first invoke() on a real test image (set_tensor outside the clock)
  then `warmup` untimed invokes, then `runs` invokes each timed alone with perf_counter_ns;
  median / p90 / p99 / mean / std over those runs. The input tensor is set once before the loop, so
  only invoke() is on the clock. Threads are fixed per row. Peak RSS is the process-wide peak so far
  (resource.getrusage ru_maxrss): it only grows, and it includes every model loaded before the row.
Accuracy is computed once per model, on the first configuration that loads (the first delegate of
`--delegate`, the first thread count), from real predictions over the whole split. The split comes as a
stream of decoded batches (edge/data/stream.py ImageStream): each model's pass decodes it again, so only a
few batches of pixels are in memory, at the cost of one decode per image and model (~1.6 ms of CPU on a
2-core EPYC, spread over the decode threads).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from cxredge.edge.data.sources import ModelEntry
from cxredge.edge.data.stream import as_images
from cxredge.edge.evaluate.metrics import agreement, classification_metrics
from cxredge.edge.runtime.device import temperatures_c
from cxredge.edge.runtime.interpreter import Runtime, TFLiteModel
from cxredge.errors import CxrError
from cxredge.formats import NOISY_SPREAD, bench_row, fill_speedups, latency_spread
from cxredge.vocab import resolve_delegate

RUN_ERRORS = (CxrError, RuntimeError, ValueError, OSError)


@dataclass(frozen=True)
class BenchSettings:
    threads: tuple[int, ...] = (1,)
    delegates: tuple[str, ...] = ("xnnpack",)
    delegate_options: tuple[tuple[str, str], ...] = ()
    runs: int = 100
    warmup: int = 10

    def __post_init__(self):
        if self.runs < 1:
            raise CxrError(f"--runs {self.runs}: must be >= 1")
        if self.warmup < 0:
            raise CxrError(f"--warmup {self.warmup}: must be >= 0")
        if not self.threads or not self.delegates:
            raise CxrError("--threads and --delegate need at least one value each")

    def to_dict(self) -> dict:
        return {"threads": list(self.threads), "delegates": list(self.delegates),
                "delegate_options": dict(self.delegate_options), "runs": self.runs, "warmup": self.warmup,
                "timer": "time.perf_counter_ns, one invoke() per sample"}


def latency_stats(samples_ns: list[int] | np.ndarray) -> dict:
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    return {"median": float(np.median(ms)), "p90": float(np.percentile(ms, 90)), "p99": float(np.percentile(ms, 99)),
            "mean": float(ms.mean()), "std": float(ms.std()), "min": float(ms.min()), "runs": int(len(ms))}


def spread(stats: dict) -> float | None:
    """p90 / median of one row's timings (formats.latency_spread)."""
    return latency_spread(stats)


def steady_latency(measure_once: Callable[[], list[int]]) -> tuple[dict, dict]:
    """Time a row; when its spread is high (another process took the CPU), time it once more and keep
    the run with the lower p90. Returns (latency stats, check): check says the spread of each run, whether
    the row was re-measured, and `noisy` when even the kept run is above NOISY_SPREAD."""
    first = latency_stats(measure_once())
    s1 = spread(first)
    check = {"threshold": NOISY_SPREAD, "spread": round(s1, 3) if s1 else s1, "remeasured": False,
             "first_spread": None}
    kept = first
    if s1 is not None and s1 > NOISY_SPREAD:
        second = latency_stats(measure_once())
        kept = second if second["p90"] < first["p90"] else first
        s2 = spread(kept)
        check.update(remeasured=True, first_spread=round(s1, 3), spread=round(s2, 3) if s2 else s2)
    check["noisy"] = bool(check["spread"] is not None and check["spread"] > NOISY_SPREAD)
    return kept, check


def machine_load() -> dict:
    """What else the machine was doing: the load average (1, 5, 15 min) and the cpufreq governor, where
    readable (None elsewhere); a load near the core count means the timings share the CPU."""
    import os

    from cxredge.edge.runtime.device import cpu_governor

    try:
        avg = [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        avg = None
    return {"loadavg": avg, "cpu_governor": cpu_governor(), "cores": os.cpu_count()}


def time_invokes(model: TFLiteModel, runs: int, warmup: int) -> list[int]:
    """`warmup` untimed invokes, then `runs` invokes each timed alone (ns). The input is already set."""
    invoke = model.interpreter.invoke
    clock = time.perf_counter_ns
    for _ in range(warmup):
        invoke()
    samples = [0] * runs
    for i in range(runs):
        t0 = clock()
        invoke()
        samples[i] = clock() - t0
    return samples


def measure(entry: ModelEntry, delegate: str, threads: int, image: np.ndarray, settings: BenchSettings,
            runtime: Runtime, num_classes: int | None = None) -> tuple[dict, TFLiteModel | None]:
    """One latency row. Never raises for a model or delegate problem: the row says `failed`."""
    row = base_row(entry, delegate, threads)
    try:
        t0 = time.perf_counter_ns()
        model = TFLiteModel(entry.path, threads=threads, delegate=resolve_delegate(delegate),
                            delegate_options=dict(settings.delegate_options), runtime=runtime)
        init_ns = time.perf_counter_ns() - t0
        model.check_input(image.shape)
        if num_classes is not None and model.num_classes != num_classes:
            raise CxrError(f"{entry.path}: {model.num_classes} outputs, but the dataset has {num_classes} classes")
        model.set_input(image)
        t0 = time.perf_counter_ns()
        model.invoke()
        first_ns = time.perf_counter_ns() - t0
        stats, check = steady_latency(lambda: time_invokes(model, settings.runs, settings.warmup))
    except RUN_ERRORS as exc:
        row.update(status="failed", error=one_line(exc))
        return row, None
    row["latency_ms"] = {"init": init_ns / 1e6, "first": first_ns / 1e6, **stats}
    row["latency_check"] = check
    row["latency_noisy"] = check["noisy"]
    row.update(memory())
    temps = temperatures_c()
    row["temperature_c"] = max(temps.values()) if temps else None  # a Pi's CPU heats up row by row
    return row, model


def base_row(entry: ModelEntry, delegate: str, threads: int) -> dict:
    return bench_row(model=entry.key, path=str(entry.path), variant=entry.variant, precision=entry.precision,
                     sha256=entry.sha256, delegate=delegate, threads=threads,
                     size_bytes=entry.size_bytes)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, CxrError) else f"{type(exc).__name__}: {text}"


def memory() -> dict:
    """Peak RSS of the whole process so far (ru_maxrss) and the current RSS, in MiB, where readable."""
    out = {"peak_rss_mb": None, "rss_mb": None}
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out["peak_rss_mb"] = round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)
    except ImportError:
        pass
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        import os

        out["rss_mb"] = round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return out


def predict_labels(model: TFLiteModel, images, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Top-1 per image of an array or an ImageStream."""
    return model.predict_all(images, progress).argmax(axis=1)


def reference_predictions(entry: ModelEntry, images, runtime: Runtime, known: dict[Path, np.ndarray],
                          progress: Callable[[int], None] | None = None) -> np.ndarray | None:
    """Top-1 of the float32 model of the same variant (benched already, or run here for predictions only)."""
    ref = entry.reference
    if ref is None:
        return None
    ref = ref.resolve()
    if ref not in known:
        try:
            known[ref] = predict_labels(TFLiteModel(ref, threads=1, runtime=runtime), images, progress)
        except RUN_ERRORS:
            return None
    return known[ref]


@dataclass
class BenchOutcome:
    rows: list[dict]
    models: dict[str, dict]  # key -> metrics of that model (+ evaluated_with, agreement_with_float)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # key -> top-1 per image (x order)
    probabilities: dict[str, np.ndarray] = field(default_factory=dict)  # key -> (N, C) dequantized outputs
    references: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)  # key -> (float32 name, its top-1)


def run_bench(entries: list[ModelEntry], images, y: np.ndarray, classes: list[str],
              settings: BenchSettings, runtime: Runtime, progress=None) -> BenchOutcome:
    """Every (model, delegate, threads) row; accuracy once per model; agreement and speed-up after.

    `images`: the split, an ImageStream (decoded batch by batch, once per model pass) or a uint8 array.
    `progress`: an optional object with `start(description, total)` and `advance(n)` (the CLI's rich bar).
    """
    images = as_images(images)
    first = images.head(1)[0]  # the latency rows' input: the first image of the split
    rows: list[dict] = []
    models: dict[str, dict] = {}
    preds: dict[Path, np.ndarray] = {}
    probs: dict[str, np.ndarray] = {}
    step = progress.advance if progress else None
    for entry in entries:
        for delegate in settings.delegates:
            for threads in settings.threads:
                if progress:
                    progress.start(f"{entry.key} {delegate} x{threads}", 1)
                row, model = measure(entry, delegate, threads, first, settings, runtime, len(classes))
                if step:
                    step(1)
                rows.append(row)
                if model is not None and entry.key not in models:
                    if progress:
                        progress.start(f"{entry.key} accuracy on {len(images)} images", len(images))
                    try:
                        probs[entry.key] = model.predict_all(images, step)
                    except RUN_ERRORS as exc:
                        row.update(status="failed", error=one_line(exc), latency_ms=None)
                        continue
                    labels = probs[entry.key].argmax(axis=1)
                    preds[entry.path.resolve()] = labels
                    models[entry.key] = {**classification_metrics(y, labels, classes),
                                         "evaluated_with": {"delegate": delegate, "threads": threads}}
                del model
    references: dict[str, tuple[str, np.ndarray]] = {}
    by_path = {e.path.resolve(): e.key for e in entries}
    for entry in entries:
        if entry.key in models:
            if progress and entry.reference and entry.reference.resolve() not in preds:
                progress.start(f"{entry.key}: float32 reference", len(images))
            ref = reference_predictions(entry, images, runtime, preds, step)
            mine = preds[entry.path.resolve()]
            models[entry.key]["agreement_with_float"] = None if ref is None else agreement(mine, ref)
            if ref is not None:
                ref_path = entry.reference.resolve()
                references[entry.key] = (by_path.get(ref_path, f"{entry.variant}/float32"), ref)
    fill_rows(rows, models)
    return BenchOutcome(rows, models, {e.key: preds[e.path.resolve()] for e in entries if e.key in models},
                        probs, references)


def fill_rows(rows: list[dict], models: dict[str, dict]) -> None:
    """Copy each model's accuracy onto its ok rows; speed-up by the one rule (cxredge/formats.py)."""
    for row in rows:
        m = models.get(row["model"])
        if m and row["status"] == "ok":
            for k in ("accuracy", "macro_f1", "macro_precision", "macro_recall", "agreement_with_float"):
                row[k] = m.get(k)
    fill_speedups(rows)
