"""What every benchmark script shares: where the repository and its results are, the machine a figure was
measured on, how to run the real CLI, and how a result is saved.

Each script lives in benchmarks/<verb>/ and writes under benchmarks/results/<verb>/ (`results_dir`); it
starts with

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
    from common import ...

Importing this module also puts the repository root first on sys.path, so a script measures the checkout
it sits in, not some other installed cxredge.
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_ROOT = ROOT / "benchmarks" / "results"
DEFAULT_DATA = Path("../shared/data/chest_xray_4class")  # from the repository root, as the docs name it
INT8_DOT_FLAGS = ("avx_vnni", "avx512_vnni", "amx_int8", "asimddp")  # int8 dot-product features (x86, Arm)

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def results_dir(script: str | Path) -> Path:
    """benchmarks/results/<verb>/ for the script benchmarks/<verb>/<name>.py: results mirror the scripts."""
    return RESULTS_ROOT / Path(script).resolve().parent.name


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a `python -m cxredge` child: this checkout first on PYTHONPATH, wide tables."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "COLUMNS": "150", **extra}


def cli(*args: str, capture: bool = True, env: dict[str, str] | None = None, cwd: Path = ROOT,
        quiet: bool = False) -> str:
    """Run `python -m cxredge ARGS` as a user would; its stdout (captured) or "" (streamed).

    A non-zero exit stops the benchmark with the command and the tail of its output.
    """
    cmd = [sys.executable, "-m", "cxredge", *map(str, args)]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, env=env or cli_env(), capture_output=capture, text=True)
    if not quiet:
        print(f"  cxredge {' '.join(map(str, args[:3]))} ... exit {res.returncode} in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
    if res.returncode:
        tail = f"\n{(res.stdout or '')[-3000:]}\n{(res.stderr or '')[-3000:]}" if capture else ""
        raise SystemExit(f"{' '.join(cmd)} failed (exit {res.returncode}){tail}")
    return res.stdout or ""


def _lscpu() -> dict[str, str]:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in text.splitlines() if ":" in line)}


def cpu_flags() -> list[str]:
    """The CPU's int8 dot-product features that XNNPACK can use (empty: none, or not readable)."""
    flags = set(_lscpu().get("Flags", "").split())
    if not flags:
        try:
            flags = set(Path("/proc/cpuinfo").read_text().split())
        except OSError:
            return []
    return [f for f in INT8_DOT_FLAGS if f in flags]


def cpu_info() -> dict:
    """lscpu's model name and CPU count, and whether AVX-512 VNNI / AMX int8 are there (None: unknown)."""
    field = _lscpu()
    if not field:
        return {"model": None, "cores": None, "avx512_vnni": None}
    flags = field.get("Flags", "").split()
    return {"model": field.get("Model name", ""), "cpus": field.get("CPU(s)", ""),
            "avx512_vnni": "avx512_vnni" in flags, "amx_int8": "amx_int8" in flags}


def cpu_summary() -> str:
    """One line for a result file, e.g. 'Intel(R) Xeon(R) Processor, 2 cores, x86_64, avx512_vnni + amx_int8'."""
    info = cpu_info()
    model = info.get("model") or platform.processor() or "unknown CPU"
    dots = " + ".join(cpu_flags()) or "no int8 dot-product flags"
    return f"{model}, {os.cpu_count()} cores, {platform.machine()}, {dots}"


def machine_info() -> dict:
    """CPU, cores, OS, Python and the ML package versions, for a result file's `machine` field."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from cxredge.convert.artifacts import versions

    return {"machine": platform.machine(), "cpu": cpu, "cores": os.cpu_count(), "os": platform.platform(),
            "python": platform.python_version(), "versions": versions()}


class NullTracker:
    """What `quantize_run` reports progress to, when a benchmark wants no bars."""

    def task(self, description: str, total: int):
        return lambda n=1: None


def save(out: Path, stem: str, doc: dict, text: str) -> None:
    """out/stem.json and out/stem.md, atomically; the markdown is printed too."""
    from cxredge.io import write_json, write_text

    write_json(out / f"{stem}.json", doc)
    write_text(out / f"{stem}.md", text)
    print(text)


def copy_run(src: Path, dst: Path, variants: tuple[str, ...]) -> Path:
    """The variants' model.keras and run.json of a run, copied so a benchmark never writes into the original."""
    if dst.exists():
        shutil.rmtree(dst)
    for v in variants:
        (dst / v).mkdir(parents=True)
        shutil.copy2(src / v / "model.keras", dst / v / "model.keras")
    shutil.copy2(src / "run.json", dst / "run.json")
    return dst
