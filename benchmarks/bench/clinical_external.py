"""An external-style validation run: the val split of the run's dataset, laid out as a test-only folder.

    flock /tmp/cxredge-heavy.lock .venv/bin/python benchmarks/bench/clinical_external.py --run runs/full

1. copies DATA/val/<class>/ to a temporary X/test/<class>/ (no train/, no val/: the layout an external
   test set from another hospital has);
2. `cxredge bench --run RUN --data X --name "val as external"` -> benchmarks/results/bench/clinical/external/;
3. `cxredge report --bench clinical/internal/bench.json --bench clinical/external/bench.json`
   -> benchmarks/results/bench/clinical/report.md (the internal bench comes from benchmarks/bench/clinical_overhead.py).
It is the same hospital's images (val was used for early stopping): the run shows the mechanics and what
the report looks like, not a generalisation estimate.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from common import ROOT, cli, results_dir  # noqa: E402

OUT = results_dir(__file__) / "clinical"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=ROOT / "runs" / "full")
    args = ap.parse_args()
    data = Path(json.loads((args.run / "run.json").read_text())["data"]["path"])
    internal = OUT / "internal" / "bench.json"
    if not internal.is_file():
        raise SystemExit(f"{internal}: run benchmarks/bench/clinical_overhead.py first (it keeps the internal bench)")
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
