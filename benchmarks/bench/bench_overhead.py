"""Does cxredge's timing add overhead? cxredge bench's timed median vs a bare invoke() loop, same model, same run.

    flock /tmp/cxredge-heavy.lock .venv/bin/python benchmarks/bench/bench_overhead.py \
        [MODEL.tflite ...] [--runs 300] [--rounds 5]

Per model, `rounds` alternating rounds (ABAB...) of:
  A  cxredge: cxredge.edge.bench.measure.measure() (what `cxredge bench` runs for a row: TFLiteModel, first invoke,
     warm-up, `runs` invokes each timed alone) -> its median;
  B  bare: ai_edge_litert Interpreter(num_threads=1), set_tensor once, warm-up, then `runs` x
     (perf_counter_ns; invoke(); perf_counter_ns) -> median; and the whole loop's wall time / runs.
Reports median over rounds of each, and the ratio cxredge / bare (target: within 3%).
Writes benchmarks/results/bench/bench_overhead.json and .md with the machine facts.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from common import ROOT, results_dir  # noqa: E402

from cxredge.edge.bench.measure import BenchSettings, ModelEntry, measure  # noqa: E402
from cxredge.edge.data.images import load_image  # noqa: E402
from cxredge.edge.runtime.device import device_info  # noqa: E402
from cxredge.edge.runtime.interpreter import find_runtime  # noqa: E402
from cxredge.io import write_json, write_text  # noqa: E402
from cxredge.paths import SAMPLE_DATA  # noqa: E402


def bare(path: Path, image: np.ndarray, runs: int, warmup: int) -> tuple[float, float]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], image[None].astype(d["dtype"]))
    for _ in range(warmup):
        it.invoke()
    samples = []
    t_loop = time.perf_counter_ns()
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        it.invoke()
        samples.append(time.perf_counter_ns() - t0)
    loop_ms = (time.perf_counter_ns() - t_loop) / 1e6 / runs
    return float(np.median(samples)) / 1e6, loop_ms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*", type=Path)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=results_dir(__file__))
    a = ap.parse_args()
    models = a.models or sorted((ROOT / "runs" / "full").glob("*/*.tflite"))
    if not models:
        sys.exit("no models: pass MODEL.tflite or quantize runs/full first")
    image = load_image(next(iter(sorted((SAMPLE_DATA / "test").rglob("*.png")))))
    runtime = find_runtime()
    settings = BenchSettings(runs=a.runs, warmup=a.warmup)
    out = []
    for path in models:
        ours, mine_bare, loop = [], [], []
        entry = ModelEntry(path, f"{path.parent.name}/{path.stem}", path.parent.name, path.stem, None)
        for _ in range(a.rounds):
            row, _model = measure(entry, "xnnpack", 1, image, settings, runtime)
            ours.append(row["latency_ms"]["median"])
            b, lp = bare(path, image, a.runs, a.warmup)
            mine_bare.append(b)
            loop.append(lp)
        r = {"model": entry.key, "cxredge_median_ms": statistics.median(ours),
             "bare_median_ms": statistics.median(mine_bare),
             "bare_loop_mean_ms": statistics.median(loop), "rounds_cxredge": ours, "rounds_bare": mine_bare}
        r["ratio"] = r["cxredge_median_ms"] / r["bare_median_ms"]
        # Each round's A and B run back to back, so their ratio shares the machine's state; the median of
        # those paired ratios is the estimate that survives drift from other load between rounds.
        r["paired_ratios"] = [o / b for o, b in zip(ours, mine_bare)]
        r["paired_ratio_median"] = statistics.median(r["paired_ratios"])
        r["within_3pct"] = abs(r["paired_ratio_median"] - 1) <= 0.03
        out.append(r)
        print(f"{entry.key:18s} cxredge {r['cxredge_median_ms']:.3f} ms  bare {r['bare_median_ms']:.3f} ms  "
              f"bare loop {r['bare_loop_mean_ms']:.3f} ms  ratio {r['ratio']:.4f}  paired "
              f"{r['paired_ratio_median']:.4f}  {'OK' if r['within_3pct'] else 'OVER 3%'}")
    doc = {"device": device_info(runtime), "runs": a.runs, "warmup": a.warmup, "rounds": a.rounds,
           "threads": 1, "delegate": "xnnpack", "results": out}
    a.out.mkdir(parents=True, exist_ok=True)
    write_json(a.out / "bench_overhead.json", doc)
    lines = ["# cxredge timing overhead vs a bare invoke() loop", "",
             f"{doc['device']['cpu_model']}, {doc['device']['cores']} cores, {doc['device']['runtime']} "
             f"{doc['device']['runtime_version']}; 1 thread, XNNPACK; {a.rounds} alternating rounds of {a.runs} runs "
             f"(+{a.warmup} warm-up); medians over rounds.", "",
             "| model | cxredge median ms | bare median ms | bare loop mean ms | ratio of medians | median paired "
             "ratio | within 3% (paired) | rounds cxredge / bare ms |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['cxredge_median_ms']:.3f} | {r['bare_median_ms']:.3f} | "
              f"{r['bare_loop_mean_ms']:.3f} | "
              f"{r['ratio']:.4f} | {r['paired_ratio_median']:.4f} | {'yes' if r['within_3pct'] else 'NO'} | "
              f"{' '.join(f'{x:.2f}' for x in r['rounds_cxredge'])} / "
              f"{' '.join(f'{x:.2f}' for x in r['rounds_bare'])} |"
              for r in out]
    write_text(a.out / "bench_overhead.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
