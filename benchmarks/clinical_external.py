"""An external-style validation run: the val split of the run's dataset, laid out as a test-only folder.

    flock /tmp/cxredge-heavy.lock .venv/bin/python benchmarks/clinical_external.py --run runs/full

1. copies DATA/val/<class>/ to a temporary X/test/<class>/ (no train/, no val/: the layout an external
   test set from another hospital has);
2. `cxredge bench --run RUN --data X --name "val as external"` -> benchmarks/results/clinical/external/;
3. `cxredge report --bench clinical/internal/bench.json --bench clinical/external/bench.json`
   -> benchmarks/results/clinical/report.md (the internal bench comes from benchmarks/clinical_overhead.py).
It is the same hospital's images (val was used for early stopping): the run shows the mechanics and what
the report looks like, not a generalisation estimate.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "clinical"


def cli(*args: str) -> str:
    cmd = [str(Path(sys.executable).with_name("cxredge")), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=ROOT / "runs" / "full")
    args = ap.parse_args()
    data = Path(json.loads((args.run / "run.json").read_text())["data"]["path"])
    internal = OUT / "internal" / "bench.json"
    if not internal.is_file():
        raise SystemExit(f"{internal}: run benchmarks/clinical_overhead.py first (it keeps the internal bench)")
    with tempfile.TemporaryDirectory() as tmp:
        ext = Path(tmp) / "val_as_external"
        shutil.copytree(data / "val", ext / "test")
        out = OUT / "external"
        if out.exists():
            shutil.rmtree(out)
        print(cli("bench", "--run", str(args.run), "--data", str(ext), "--name", "val as external", "--out", str(out)))
    print(cli("report", "--bench", str(internal), "--bench", str(out / "bench.json"), "--out", str(OUT)))
    (OUT / "report.html").unlink(missing_ok=True)  # several MB of embedded PNGs: the Markdown twin is committed


if __name__ == "__main__":
    main()
