"""Every on-disk contract of cxredge, each defined once next to its FORMAT version. Imports only cxredge.vocab.

Users and scripts read these files, so names are kept and fields only added; a change that breaks a
reader bumps the version after the slash. Modules that write or read a format import its names here.

Run folder (`cxredge train --out RUN`; quantize, bench, explain, audit, report and export read it):
  run.json                  RUN_FORMAT: classes, data {path, sha256, split_seed, ...}, alpha, weights, seed,
                            variants, settings, versions, devices, leakage, skipped, audit, results
  labels.txt                one class per line, output order (in a bundle)
  audit.json/.md/.html      AUDIT_FORMAT (cxredge/edge/audit/, docs/audit.md)
  quantize.json             {settings, results}: one row per converted model (cxredge/convert/pipeline.py)
  <variant>/                VARIANTS (cxredge/vocab.py)
    model.keras, history.json, curves.png
    metrics.json            METRICS_KEYS (below), confusion.png
    <precision>.tflite      PRECISIONS (cxredge/vocab.py), each with its sidecar <precision>.json
  bench.json, bench.md      BENCH_FORMAT (below); moving to bench/<dataset>/ (bench_dir)
  explain/explain.json      EXPLAIN_FORMAT (cxredge/edge/explain/run.py, docs/explain.md)
  test_images/<class>/      a bundle's labelled images (`cxredge export --with-test-images`)
"""
from __future__ import annotations

import math
from pathlib import Path

from cxredge.vocab import REFERENCE

# ---- run folder: file names -------------------------------------------------------------------------
RUN_FORMAT = "cxredge-run/1"
RUN_JSON = "run.json"
METRICS_JSON = "metrics.json"
LABELS_TXT = "labels.txt"
QUANTIZE_JSON = "quantize.json"
AUDIT_JSON, AUDIT_MD, AUDIT_HTML = "audit.json", "audit.md", "audit.html"
BENCH_JSON, BENCH_MD = "bench.json", "bench.md"
BENCH_DIR = "bench"
EXPLAIN_DIR, EXPLAIN_JSON = "explain", "explain.json"
TEST_IMAGES = "test_images"
DEVICES_DIR = "devices"  # devices/<host>/bench.json: what `cxredge bench --remote` brought back

# metrics.json (train, per variant; cxredge/edge/evaluate/metrics.py computes it). per_class {class: {precision,
# recall, f1, support}}; confusion_matrix rows = true class. The clinical block (cxredge/edge/evaluate/validation.py)
# and variant, split are added to it.
METRICS_KEYS = ("classes", "accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1", "per_class",
                "confusion_matrix")


def bench_dir(run_dir: str | Path, dataset: str) -> Path:
    """Where the bench of one dataset lives in a run: <run>/bench/<dataset>/."""
    return Path(run_dir) / BENCH_DIR / dataset


# ---- sidecar: the JSON next to every .tflite (`int8.tflite` -> `int8.json`) -----------------------------
# Written by `cxredge quantize` (cxredge/convert/artifacts.py), read on the device (cxredge/edge/formats/sidecar.py):
#   format        SIDECAR_FORMAT
#   model         file name of the .tflite
#   variant       VARIANTS;  precision  PRECISIONS (the file stem)
#   labels        class names in output order
#   input         {name, shape, dtype, scale, zero_point, pixels: "raw uint8 RGB 0-255, gray copied to 3 channels"}
#   output        {name, shape, dtype, scale, zero_point, kind: "probabilities"}
#   sha256, size_bytes
#   calibration   null or {manifest (path relative to the run or repo), sha256, size, seed, dataset}
#   versions      {cxredge, tensorflow, tf_keras, tfmot, numpy}
#   validation    {split, n, max_abs_dprob, agreement, macro_f1, macro_f1_float, delta_macro_f1, ...}
#   ood           optional, OOD_FORMAT: the OOD guard's reference (cxredge/edge/ood/guard.py, docs/ood-guard.md):
#                 {format, split, n, input_size, keep, threshold, val_flagged, features {name: {median, scale,
#                 side, floor, quantiles}}, layout_grid, layout_template}. A sidecar without it (made before
#                 the guard) means "no guard", which predict and bench say, never an error.
SIDECAR_FORMAT = "cxredge-sidecar/1"
OOD_FORMAT = "cxredge-ood/1"

# ---- calibration manifest: `# cxredge-calibration/1` header, then one image per line (convert/calibration.py)
CALIBRATION_FORMAT = "cxredge-calibration/1"

# ---- bundle: one zip to copy to a device (`cxredge export`, cxredge/edge/formats/bundle.py) ---------------------
#   bundle.json   {format BUNDLE_FORMAT, created, classes, models: [{path, sha256, size}], test_images: n or 0,
#                 run: the run.json it came from (or null)}
#   labels.txt, run.json, <variant>/<precision>.tflite + sidecar, <variant>/metrics.json, test_images/<class>/
BUNDLE_FORMAT = "cxredge-bundle/1"
BUNDLE_JSON = "bundle.json"

# ---- explain: explain.json (cxredge/edge/explain/run.py) ------------------------------------------------
EXPLAIN_FORMAT = "cxredge-explain/1"

# ---- audit: audit.json (cxredge/edge/audit/run.py) ------------------------------------------------------
AUDIT_FORMAT = "cxredge-audit/1"

# ---- bench: bench.json (cxredge/edge/bench/results.py writes and reads it) -----------------------------------
#   format BENCH_FORMAT, created, device {...}, settings {...}, dataset {source, path, split, n, classes},
#   models {key: full metrics of that model + evaluated_with + agreement_with_float},
#   results [one row per (model, delegate, threads): BENCH_ROW_KEYS, then what the runner measured:
#            latency_ms {init, first, median, p90, p99, mean, std, min, runs}, peak_rss_mb, rss_mb,
#            temperature_c (cxredge bench) or memory_footprint_mb (LiteRT benchmark_model)],
#   clinical per model and row: per_class sensitivity / specificity / ppv / npv / auc / sens_at_spec95, macro_auc,
#       brier, ece, ci95, paired_vs_float (cxredge/edge/evaluate/validation.py, docs/clinical-metrics.md),
#   ood {n, n_flagged, share, threshold, reasons, flagged, per_model, guarded, unguarded} (the OOD guard:
#       cxredge/edge/ood/flags.py, docs/ood-guard.md),
#   notes [...]
# LiteRT benchmark_model text output becomes the same document with format BENCHMARK_MODEL_FORMAT.
BENCH_FORMAT = "cxredge-bench/1"
BENCHMARK_MODEL_FORMAT = "benchmark_model-text"
BENCH_ROW_KEYS = ("model", "path", "variant", "precision", "sha256", "delegate", "threads", "size_bytes", "status",
                  "error", "accuracy", "macro_f1", "macro_precision", "macro_recall", "agreement_with_float",
                  "latency_ms", "speedup_vs_float32")
BENCH_ROW_MEASURED = ("peak_rss_mb", "rss_mb", "temperature_c", "memory_footprint_mb",  # runner-specific extras
                      "latency_check", "latency_noisy", "speedup_withheld")
NOISY_SPREAD = 1.5  # p90 / median of a row's latency above this: the row's timing is not to be trusted
# fields of a bench.json that depend on the clock or the machine's state, not on the models and images
BENCH_CLOCKED = frozenset({"latency_ms", "latency_check", "latency_noisy", "peak_rss_mb", "rss_mb", "temperature_c",
                           "speedup_vs_float32", "speedup_withheld", "wall_s", "machine_load", "device", "seconds",
                           "created"})


def unclocked(doc, also: frozenset[str] | set[str] = frozenset()):
    """`doc` (a bench.json, or any part of it) without BENCH_CLOCKED fields and `also`, at every depth:
    what two benches of the same models on the same images must agree on."""
    drop = BENCH_CLOCKED | set(also)
    if isinstance(doc, dict):
        return {k: unclocked(v, drop) for k, v in doc.items() if k not in drop}
    if isinstance(doc, list):
        return [unclocked(v, drop) for v in doc]
    return doc


def latency_spread(latency: dict | None) -> float | None:
    """p90 / median of a row's latency_ms, where both are known: 1.0 = every invoke alike; above
    NOISY_SPREAD the row's timing is not to be trusted."""
    lat = latency or {}
    med, p90 = lat.get("median"), lat.get("p90")
    ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (med, p90))
    return p90 / med if ok and med > 0 else None
ROW_STATUSES = ("ok", "failed")


def bench_row(**fields) -> dict:
    """One results[] row: every BENCH_ROW_KEYS key (None unless given; status "ok"), then measured extras."""
    unknown = [k for k in fields if k not in BENCH_ROW_KEYS and k not in BENCH_ROW_MEASURED]
    if unknown:
        raise KeyError(f"not bench row keys: {', '.join(unknown)} (cxredge/formats.py BENCH_ROW_KEYS)")
    row = dict.fromkeys(BENCH_ROW_KEYS)
    row["status"] = "ok"
    row.update(fields)
    return row


def headline_ms(row: dict | None) -> float | None:
    """A row's headline latency: None for a missing or failed row, else the median where the runner gave one,
    else the mean."""
    if row is None or row.get("status") != "ok":
        return None
    lat = row.get("latency_ms") or {}
    return lat.get("median") if lat.get("median") is not None else lat.get("mean")


def fill_speedups(rows: list[dict]) -> None:
    """The one speed-up rule: speedup_vs_float32 = the float32 row's latency / the row's, where both rows are
    ok and share variant, delegate and threads. Median against median when both rows have one, else mean.
    Never from a noisy row (latency_noisy, in this row or its float32 row): speedup_withheld says why."""
    floats = {(r["variant"], r["delegate"], r["threads"]): r for r in rows
              if r["precision"] == REFERENCE and r["status"] == "ok"}
    for row in rows:
        ref = floats.get((row["variant"], row["delegate"], row["threads"]))
        if row["status"] != "ok" or ref is None or not row.get("latency_ms") or not ref.get("latency_ms"):
            continue
        if row.get("latency_noisy") or ref.get("latency_noisy"):
            row["speedup_withheld"] = f"noisy latency (p90/median > {NOISY_SPREAD}) in this row or its float32 row"
            continue
        both_median = ref["latency_ms"].get("median") and row["latency_ms"].get("median")
        stat = "median" if both_median else "mean"
        mine, theirs = row["latency_ms"].get(stat), ref["latency_ms"].get(stat)
        if mine and theirs and math.isfinite(theirs / mine):
            row["speedup_vs_float32"] = theirs / mine
