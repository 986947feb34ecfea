"""How long does the README's quick-start command 1 take on this machine? Timed step by step, logged.

    flock /tmp/cxredge-heavy.lock python3 benchmarks/quickstart/quickstart_time.py [--repo .] [--keep]

Clones the repository's committed HEAD into a temporary folder (as a new user gets it), then runs the
steps of command 1 there one by one, each timed: venv, pip upgrade, `pip install -e '.[train]'`,
`cxredge train`, `cxredge quantize`, `cxredge bench`, `cxredge report`. The pipeline time (train to
report) is what the README's "after the install" figure means; the install depends on the network and
the pip cache. Writes benchmarks/results/quickstart/quickstart_time.md and .log (every step's output).
"""
from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from common import ROOT, cpu_summary, results_dir  # noqa: E402

RESULTS = results_dir(__file__)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", type=Path, default=ROOT)
    ap.add_argument("--keep", action="store_true", help="keep the clone (printed)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cxredge-quickstart-"))
    clone = tmp / "cxredge"
    subprocess.run(["git", "clone", "-q", str(args.repo), str(clone)], check=True)
    head = subprocess.run(["git", "-C", str(clone), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    steps = [("venv", [sys.executable, "-m", "venv", ".venv"]),
             ("pip upgrade", [".venv/bin/pip", "install", "-q", "-U", "pip"]),
             ("pip install -e '.[train]'", [".venv/bin/pip", "install", "-q", "-e", ".[train]"]),
             ("cxredge train", [".venv/bin/cxredge", "train"]),
             ("cxredge quantize", [".venv/bin/cxredge", "quantize"]),
             ("cxredge bench", [".venv/bin/cxredge", "bench"]),
             ("cxredge report", [".venv/bin/cxredge", "report"])]
    times, log = [], []
    for name, cmd in steps:
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=clone, capture_output=True, text=True)
        dt = time.perf_counter() - t0
        times.append((name, dt))
        log += [f"$ {' '.join(cmd)}   # {name}: {dt:.1f} s, exit {proc.returncode}", proc.stdout[-4000:],
                proc.stderr[-4000:]]
        print(f"{name}: {dt:.1f} s (exit {proc.returncode})", flush=True)
        if proc.returncode != 0:
            break
    ok = len(times) == len(steps) and (clone / "runs" / "default" / "report.html").is_file()
    pipeline = sum(dt for name, dt in times if name.startswith("cxredge"))
    md = ["# Quick-start command 1, timed step by step", "",
          f"- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, a fresh clone of {head}; "
          f"CPU: {cpu_summary()}; Python {platform.python_version()}",
          "- produced by `benchmarks/quickstart/quickstart_time.py`; every step's output: "
          "`quickstart_time.log`", "", "| step | seconds |", "|---|---:|"]
    md += [f"| {name} | {dt:.1f} |" for name, dt in times]
    md += ["", f"**Pipeline after the install (train + quantize + bench + report): {pipeline:.0f} s**"
           + ("" if ok else " (INCOMPLETE: a step failed, see the log)") + "; the install depends on the network and "
           "pip's cache.", ""]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "quickstart_time.md").write_text("\n".join(md))
    (RESULTS / "quickstart_time.log").write_text("\n".join(log))
    print("\n".join(md))
    if args.keep:
        print("clone kept at", clone)
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
