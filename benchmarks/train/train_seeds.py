"""How much of a head's test accuracy is the seed? Every variant, several seeds, one feature cache.

`cxredge train` reports one seed. At n = 840 the test noise alone is about +-1.3 points (1 s.e.), and
the seed (head initialisation, batch order, view choice, dropout masks) moves the result as well. This
script trains each cached variant's tail with seeds 0..N-1 through the same code path as `cxredge
train` (train_tuning.run: clear_session, set_determinism(seed), build_model, tail_model,
CachedBatches, fit with early stopping on val loss), so seed 0 reproduces a default `cxredge train`
run of the same data. Defaults are never chosen here: it only measures the spread of the current
defaults. Writes benchmarks/results/train/train_seeds.{json,md}.

    flock /tmp/cxredge-heavy.lock .venv/bin/python benchmarks/train/train_seeds.py \
        --data ../shared/data/chest_xray_4class --seeds 5
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

import train_tuning as tuning  # benchmarks/ is on sys.path when this script runs

from cxredge.train.settings import TrainSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from common import machine_info, results_dir  # noqa: E402

RESULTS = results_dir(__file__)
METRICS = ("val_acc", "val_f1", "test_acc", "test_f1")


def spread(values: list[float]) -> dict:
    return {"mean": round(statistics.fmean(values), 4),
            "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


def summarise(rows: list[dict]) -> dict:
    out = {}
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == variant]
        out[variant] = {"seeds": [r["cfg"]["seed"] for r in mine],
                        **{m: spread([r[m] for r in mine]) for m in METRICS},
                        "epochs": [r["epochs"] for r in mine], "seconds": [r["sec"] for r in mine]}
    return out


def markdown(summary: dict, rows: list[dict], meta: dict) -> str:
    lines = [f"# Seed spread of the cached heads ({meta['date']})", "",
             f"Data `{meta['data']}`; current `cxredge train` defaults (`TrainSettings()`), seeds "
             f"{meta['seeds']}; {meta['machine']}. Selection never looks at test; nothing here was tuned.",
             "",
             "| variant | seeds | val accuracy | test accuracy | test macro-F1 | test min / max | seeds >= "
             "0.82 (acc and F1) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for variant, s in summary.items():
        ok = sum(1 for r in rows if r["variant"] == variant and r["test_acc"] >= 0.82 and r["test_f1"] >= 0.82)
        lines.append(f"| {variant} | {len(s['seeds'])} | {s['val_acc']['mean']:.3f} ± {s['val_acc']['sd']:.3f} | "
                     f"**{s['test_acc']['mean']:.3f}** ± {s['test_acc']['sd']:.3f} | {s['test_f1']['mean']:.3f} ± "
                     f"{s['test_f1']['sd']:.3f} | {s['test_acc']['min']:.3f} / {s['test_acc']['max']:.3f} | "
                     f"{ok} / {len(s['seeds'])} |")
    lines += ["", "Per run (± is the sample standard deviation over seeds):", "",
              "| variant | seed | val acc | val F1 | test acc | test F1 | epochs (best) | train s |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['variant']} | {r['cfg']['seed']} | {r['val_acc']:.4f} | {r['val_f1']:.4f} | {r['test_acc']:.4f} | "
              f"{r['test_f1']:.4f} | {r['epochs']} ({r['best']}) | {r['sec']} |" for r in rows]
    lines += ["", f"Whole script: {meta['seconds']} s (feature cache included when it was not on disk)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--cache", default="/tmp/cxredge_tuning", help="feature cache folder (shared with train_tuning.py)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--variants", default="fc,one_conv,two_conv")
    args = p.parse_args()
    t0 = time.perf_counter()
    tuning.ARGS = argparse.Namespace(data=args.data, cache=args.cache)
    tuning.OUT = Path(args.cache) / "train_seeds.jsonl"  # the per-run log stays out of train_tuning.jsonl
    features = tuning.base_features()
    defaults = TrainSettings()
    rows = []
    for variant in args.variants.split(","):
        for seed in range(args.seeds):
            rows.append(tuning.run(features, variant, views=defaults.cache_views, seed=seed))
    summary = summarise(rows)
    meta = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "data": args.data,
            "seeds": list(range(args.seeds)), "machine": "{cpu}, {cores} cores".format(**machine_info()),
            "settings": defaults.to_dict(), "seconds": round(time.perf_counter() - t0, 1)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train_seeds.json").write_text(json.dumps({"meta": meta, "summary": summary, "runs": rows}, indent=1))
    text = markdown(summary, rows, meta)
    (RESULTS / "train_seeds.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
