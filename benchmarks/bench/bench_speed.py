"""int8 vs float32 latency per variant, and the wall time of benching them all, in one `cxredge bench` run.

    flock /tmp/cxredge-heavy.lock .venv/bin/python benchmarks/bench/bench_speed.py \
        [--run runs/full] [--data cxredge/data/sample]

Runs `python -m cxredge bench --run RUN --data DATA --threads 1 --delegate xnnpack` in a subprocess
(wall time includes interpreter start-up, image decoding, accuracy on the whole split and the timed runs),
then prints float32 / int8 median latency and the speed-up per variant from its bench.json.
Targets: int8 >= 2.3x faster than float32 for every variant; the whole bench < 120 s.
Writes bench.json/md + plots to benchmarks/results/bench/bench_speed/ and a summary to
benchmarks/results/bench/bench_speed.md.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from common import ROOT, cli_env, results_dir  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=ROOT / "runs" / "full")
    ap.add_argument("--data", type=Path, default=ROOT / "cxredge" / "data" / "sample")
    ap.add_argument("--out", type=Path, default=results_dir(__file__) / "bench_speed")
    ap.add_argument("--precision", default="float32,int8")
    a = ap.parse_args()
    models = [p for p in sorted(a.run.glob("*/*.tflite")) if p.stem in a.precision.split(",")]
    if not models:
        sys.exit(f"no float32/int8 models under {a.run}")
    cmd = [sys.executable, "-m", "cxredge", "bench", *map(str, models), "--data", str(a.data), "--threads", "1",
           "--delegate", "xnnpack", "--out", str(a.out)]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=cli_env(COLUMNS="140"))
    wall = time.perf_counter() - t0
    print(res.stdout[-6000:])
    if res.returncode:
        sys.exit(res.stderr[-3000:])
    doc = json.loads((a.out / "bench.json").read_text())
    rows = {(r["variant"], r["precision"]): r for r in doc["results"] if r["status"] == "ok"}
    lines = ["# int8 vs float32, 1 thread, XNNPACK (median of the timed runs, from bench.json)", "",
             f"{doc['device']['cpu_model']}, {doc['device']['cores']} cores, {doc['device']['runtime']} "
             f"{doc['device']['runtime_version']}; models {a.run.name}; data {doc['dataset']['path']} split "
             f"{doc['dataset']['split']} ({doc['dataset']['n']} images); {doc['settings']['runs']} runs after "
             f"{doc['settings']['warmup']} warm-up.", "",
             "| variant | float32 ms | int8 ms | speed-up | >= 2.3x | float32 acc | int8 acc | agreement |",
             "|---|---|---|---|---|---|---|---|"]
    ok = True
    for v in sorted({k[0] for k in rows}):
        f, q = rows.get((v, "float32")), rows.get((v, "int8"))
        if not (f and q):
            continue
        s = f["latency_ms"]["median"] / q["latency_ms"]["median"]
        ok &= s >= 2.3
        lines.append(f"| {v} | {f['latency_ms']['median']:.2f} | {q['latency_ms']['median']:.2f} | {s:.2f}x | "
                     f"{'yes' if s >= 2.3 else 'NO'} | {f['accuracy']:.3f} | {q['accuracy']:.3f} | "
                     f"{q['agreement_with_float']:.3f} |")
    lines += ["", f"Wall time of the whole `cxredge bench` ({len(models)} models, subprocess): **{wall:.1f} s** "
              f"(target < 120 s). Command: `{' '.join(Path(c).name if c == sys.executable else c for c in cmd)}`"]
    text = "\n".join(lines) + "\n"
    print(text)
    (a.out.parent / "bench_speed.md").write_text(text)
    print("ALL int8 >= 2.3x" if ok else "SOME int8 < 2.3x")


if __name__ == "__main__":
    main()
