"""A complete bench.json made without TensorFlow or a model: real metrics from seeded fake probabilities
(every block the report reads: rows, models with clinical metrics, CIs, ROC, reliability)."""
from __future__ import annotations

import numpy as np

from cxredge.edge.bench import results
from cxredge.edge.bench.measure import BenchOutcome, fill_rows
from cxredge.edge.evaluate import validation
from cxredge.edge.evaluate.metrics import agreement, classification_metrics

CLASSES = ["COVID", "Normal", "Bacterial_Pneumonia", "Viral_Pneumonia"]
SIZES = {"float32": 3_300_000, "int8": 900_000}


def synthetic_bench(n: int = 80, seed: int = 0, resamples: int = 200, latency=None, data_path: str = "/data/x",
                    internal: bool = True, host: str = "laptop") -> dict:
    """Two variants x (float32, int8); `latency` maps model key -> (median, p90) in ms."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(CLASSES)
    rows, models, probs, preds, refs = [], {}, {}, {}, {}
    for variant, skill in (("fc", 2.0), ("two_conv", 2.6)):
        base = rng.normal(size=(n, len(CLASSES)))
        base[np.arange(n), y] += skill
        for precision in ("float32", "int8"):
            key = f"{variant}/{precision}"
            logits = base + (rng.normal(scale=0.15, size=base.shape) if precision == "int8" else 0)
            p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
            probs[key], preds[key] = p, p.argmax(1)
            models[key] = {**classification_metrics(y, preds[key], CLASSES),
                           "evaluated_with": {"delegate": "xnnpack", "threads": 1}}
            med, p90 = (latency or {}).get(key, (10.0 if precision == "float32" else 4.0,) * 2)
            rows.append({"model": key, "variant": variant, "precision": precision, "delegate": "xnnpack",
                         "threads": 1, "size_bytes": SIZES[precision], "status": "ok", "error": None,
                         "sha256": f"{variant}{precision}".ljust(64, "0"),
                         "latency_ms": {"init": 5.0, "first": med * 2, "median": med, "p90": p90, "p99": p90 * 1.1,
                                        "mean": med, "std": 0.1, "min": med * 0.9, "runs": 50},
                         "latency_noisy": p90 / med > 1.5})
        refs[f"{variant}/int8"] = (f"{variant}/float32", preds[f"{variant}/float32"])
    for key, m in models.items():
        ref = refs.get(key)
        m["agreement_with_float"] = agreement(preds[key], ref[1]) if ref else 1.0
    fill_rows(rows, models)
    dataset = {"source": "test", "path": data_path, "split": "test", "n": n, "classes": CLASSES, "name": "xray",
               "internal": internal}
    device = {"hostname": host, "cpu_model": "Test CPU", "machine": "x86_64", "cores": 2, "os": "Linux"}
    doc = results.bench_document(device, {"runs": 50, "warmup": 5, "threads": [1], "delegates": ["xnnpack"]},
                                 dataset, models, rows)
    doc["origin"] = "run"
    doc["machine_load"] = {"before": {"loadavg": [0.5, 0.4, 0.3], "cpu_governor": None, "cores": 2}}
    validation.attach(doc, BenchOutcome(rows, models, preds, probs, refs), y, CLASSES, resamples=resamples)
    return doc
