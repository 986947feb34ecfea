"""How long the audit takes: `cxredge audit` on a real dataset (default chest_xray_4class, 5,600
images; target < 2 min on 2 cores), run as a user runs it, and the fast audit `cxredge train` runs on
its decoded images of the bundled sample (480 images; target: a few seconds).

    flock /tmp/cxredge-heavy.lock .venv/bin/python benchmarks/audit/audit_speed.py [--data DIR]

The full audit's outputs go to benchmarks/results/audit/chest_xray_4class/ (audit.json / .md / .html); the timings to
benchmarks/results/audit/audit_speed.json and .md, with the machine info.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from cxredge.edge.audit import audit, collect_loaded
from cxredge.edge.data.dataset import SPLITS, load_split, scan
from cxredge.edge.runtime.device import device_info
from cxredge.paths import SAMPLE_DATA

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from common import DEFAULT_DATA, results_dir, save  # noqa: E402
from common import ROOT as REPO

RESULTS = results_dir(__file__)
BUDGET_S = 120.0


def full_audit(data: Path, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "cxredge", "audit", str(data), "--out", str(out)], env=env,
                         capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"cxredge audit failed:\n{res.stdout}\n{res.stderr}")
    a = json.loads((out / "audit.json").read_text())
    shown = out.relative_to(REPO) if out.is_relative_to(REPO) else out
    return {"command": f"cxredge audit {data.name} --out {shown}", "wall_s": round(wall, 2),
            "phases_s": a["seconds"], "images": sum(sum(c.values()) for c in a["counts"].values()),
            "warnings": [w["message"] for w in a["warnings"]], "stdout_tail": res.stdout.splitlines()[-3:]}


def fast_audit(data: Path, repeats: int = 3) -> dict:
    ds = scan(data)
    loaded = {s: load_split(ds, s) for s in SPLITS}  # what train has decoded already (not timed)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a = audit(ds, collect_loaded(ds, loaded))
        times.append(time.perf_counter() - t0)
    return {"images": sum(len(v.y) for v in loaded.values()), "seconds": [round(t, 2) for t in times],
            "median_s": round(sorted(times)[len(times) // 2], 2), "phases_s_last": a["seconds"],
            "warnings": len(a["warnings"])}


def markdown(doc: dict) -> str:
    f, s, m = doc["full"], doc["fast"], doc["machine"]
    ph = f["phases_s"]
    return "\n".join([
        "# Audit speed", "",
        f"Machine: {m['cpu_model']} ({m['machine']}), {m['cores']} cores ({m['cores_usable']} usable); "
        f"load average before: {doc['loadavg_before']}; python {m['python']}, numpy {m['numpy']}.", "",
        "| what | images | wall s | read + cues s | duplicates s | probe s | budget |",
        "|---|---:|---:|---:|---:|---:|---|",
        f"| `{f['command']}` (new process, imports included) | {f['images']} | {f['wall_s']:.1f} | {ph['read']:.1f} | "
        f"{ph['duplicates']:.1f} | {ph['probe']:.1f} | {BUDGET_S:.0f} s: {f['wall_s'] / BUDGET_S:.2f}x of it |",
        f"| fast audit in `cxredge train` (bundled sample, decoded images reused; median of {len(s['seconds'])}) | "
        f"{s['images']} | {s['median_s']:.2f} | {s['phases_s_last']['read']:.2f} | "
        f"{s['phases_s_last']['duplicates']:.2f} | "
        f"{s['phases_s_last']['probe']:.2f} | a few seconds |", "",
        f"Full audit per image: {1000 * f['wall_s'] / f['images']:.1f} ms. Its warnings:", "",
        *[f"- {w}" for w in f["warnings"]], ""])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    doc = {"machine": device_info(), "loadavg_before": [round(v, 2) for v in os.getloadavg()]}
    doc["full"] = full_audit(args.data.resolve(), args.out.resolve() / args.data.resolve().name)
    doc["fast"] = fast_audit(SAMPLE_DATA)
    save(args.out, "audit_speed", doc, markdown(doc))


if __name__ == "__main__":
    main()
