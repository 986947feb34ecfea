"""LiteRT's `benchmark_model` text output (Android binary over adb, the APK's logcat, desktop) as a bench document.

The format, as LiteRT documents and prints it (tensorflow/lite/tools/benchmark/README.md and
benchmark_model.cc; ai.google.dev/edge/litert/models/measurement):

    Graph: [/data/local/tmp/cxredge/two_conv/int8.tflite]
    Num threads: [4]                       (older: "#threads used for CPU inference: [4]")
    Use xnnpack: [1]   Use gpu: [1]   Use NNAPI: [1]   External delegate path: [...]
    The input model file size (MB): 4.44184
    Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
    count=57 first=12031 curr=8712 min=8566 max=12031 avg=8788.3 std=452          (warm-up runs, us)
    Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
    count=115 first=8790 curr=8650 min=8501 max=9301 avg=8684.2 std=121 p5=8533 median=8662 p95=8912
    Inference timings in us: Init: 20283, First inference: 12031, Warmup (avg): 8788.3, Inference (avg): 8684.2
    Peak memory footprint (MB): init=4.92969 overall=38.8086
          (older: "Memory footprint delta from the start of the tool (MB): init=... overall=...")

Lines may carry a log prefix ("INFO: ", logcat's "... I tflite  : "), numbers may be written 2.71985e+06,
and several runs may follow each other in one file: each "Inference timings" line ends a run. The
tool prints nothing about the phone, so comment lines `# device: ...`, `# cpu: ...`, `# cores: ...`,
`# os: ...`, `# runtime: ...` at the top of the file (docs/phone-edgetpu.md shows how) fill the
device block. Rows are latency only: random inputs, no labels, so accuracy is null.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from cxredge.errors import CxrError
from cxredge.formats import BENCHMARK_MODEL_FORMAT, bench_row, fill_speedups
from cxredge.vocab import PRECISIONS, VARIANTS, split_stem

NUM = r"([-+]?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"  # ASCII digits only ('²'.isdigit() is True)
GRAPH = re.compile(r"Graph: \[(.*?)\]")
THREADS = re.compile(r"(?:Num threads|#threads used for CPU inference): \[(-?[0-9]+)\]")
FLAG = re.compile(r"Use (xnnpack|gpu|NNAPI|Hexagon|CoreML): \[(\w+)\]", re.IGNORECASE)
EXTERNAL = re.compile(r"External delegate path: \[(.+?)\]")
SIZE = re.compile(r"The input model file size \(MB\): " + NUM)
COUNT = re.compile(r"\bcount=([0-9]+)(.*)$")
PAIR = re.compile(r"(\w+)=" + NUM)
TIMINGS = re.compile(r"Inference timings in us: Init: " + NUM + r", First inference: " + NUM
                     + r", Warmup \(avg\): " + NUM + r", Inference \(avg\): " + NUM)
MEMORY = re.compile(r"(Peak memory footprint|Memory footprint delta from the start of the tool) \(MB\): "
                    r"init=" + NUM + r" overall=" + NUM)
META = {"device": "hostname", "cpu": "cpu_model", "cores": "cores", "os": "os", "runtime": "runtime_version",
        "machine": "machine"}


def read_bench_file(path: str | Path) -> dict:
    """A cxredge bench.json, or a benchmark_model text output turned into the same shape."""
    from cxredge.edge.bench.results import read_bench

    path = Path(path)
    if not path.is_file():
        raise CxrError(f"--bench {path}: file not found")
    if path.read_bytes()[:4096].lstrip().startswith(b"{"):
        return read_bench(path)
    text = path.read_text(encoding="utf-8", errors="replace")
    if "Inference timings in us" not in text:
        raise CxrError(f"--bench {path}: neither a cxredge bench.json nor LiteRT benchmark_model output "
                       "(no 'Inference timings in us' line)")
    return parse(text, path)


def number(text: str) -> float:
    """A time, size or memory figure: finite and >= 0, else ValueError (a damaged or hand-edited file)."""
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{text!r} is not a finite, non-negative number")
    return value


def new_run() -> dict:
    return {"graph": None, "threads": None, "flags": {}, "external": None, "size_mb": None, "counts": [],
            "timings": None, "memory": None}


def parse_runs(text: str, where: str = "benchmark_model output") -> tuple[list[dict], dict]:
    """The runs of a benchmark_model output (each ended by its timings line) and the `# key: value` facts.
    A number that is not finite and >= 0 is a CxrError naming `where` and the line."""
    runs, cur, meta = [], new_run(), {}
    for n, raw in enumerate(text.splitlines(), 1):
        try:
            cur = parse_line(raw.strip(), runs, cur, meta)
        except (ValueError, OverflowError) as exc:
            raise CxrError(f"{where}: line {n}: {' '.join(str(exc).split())[:120]}") from None
    return runs, meta


def parse_line(line: str, runs: list[dict], cur: dict, meta: dict) -> dict:
    """Fold one line into the current run (or `meta`); returns the run now current."""
    if line.startswith("#"):
        key, sep, value = line[1:].partition(":")
        if sep and key.strip().lower() in META:
            meta[META[key.strip().lower()]] = value.strip()
        return cur
    if m := GRAPH.search(line):
        cur["graph"] = m.group(1)
    elif m := THREADS.search(line):
        cur["threads"] = int(m.group(1))
    elif m := EXTERNAL.search(line):
        cur["external"] = m.group(1)
    elif m := SIZE.search(line):
        cur["size_mb"] = number(m.group(1))
    elif m := TIMINGS.search(line):
        cur["timings"] = [number(v) for v in m.groups()]
        runs.append(cur)
        cur = new_run()
    elif m := MEMORY.search(line):
        target = runs[-1] if runs and cur["graph"] is None else cur
        target["memory"] = {"init": number(m.group(2)), "overall": number(m.group(3)), "kind": m.group(1)}
    elif m := COUNT.search(line):
        cur["counts"].append({"count": int(m.group(1)), **{k: number(v) for k, v in PAIR.findall(m.group(2))}})
    for m in FLAG.finditer(line):
        cur["flags"][m.group(1).lower()] = m.group(2).lower() in ("1", "true")
    return cur


def model_name(graph: str | None) -> tuple[str, str, str]:
    """(key, variant, precision) from the --graph path: .../two_conv/int8.tflite or two_conv_int8.tflite."""
    p = Path(graph or "model.tflite")
    stem, parent = p.stem, p.parent.name
    if parent in VARIANTS or (parent and stem in PRECISIONS):
        return f"{parent}/{stem}", parent, stem
    if (flat := split_stem(stem)) is not None:
        return f"{flat[0]}/{flat[1]}", *flat
    return stem, stem, stem


def delegate_of(run: dict) -> str:
    flags = run["flags"]
    for name in ("gpu", "nnapi", "hexagon", "coreml"):
        if flags.get(name):
            return name
    if run["external"]:
        return run["external"]
    return "none" if flags.get("xnnpack") is False else "xnnpack"


def to_row(run: dict) -> dict:
    init, first, warm, avg = (v / 1000 for v in run["timings"])
    steady = run["counts"][-1] if run["counts"] else {}
    ms = {k: steady[k] / 1000 for k in ("median", "p5", "p95", "std", "min", "max") if k in steady}
    key, variant, precision = model_name(run["graph"])
    return bench_row(model=key, path=run["graph"], variant=variant, precision=precision,
                     delegate=delegate_of(run), threads=run["threads"],
                     size_bytes=round(run["size_mb"] * 1e6) if run["size_mb"] is not None else None,
                     latency_ms={"init": init, "first": first, "warmup_mean": warm, "mean": avg,
                                 "median": ms.get("median"), "p90": None, "p99": None, **ms,
                                 "runs": steady.get("count"),
                                 "warmup_runs": run["counts"][0]["count"] if len(run["counts"]) > 1 else None},
                     memory_footprint_mb=run["memory"])


def parse(text: str, path: Path) -> dict:
    runs, meta = parse_runs(text, f"--bench {path}")
    if not runs:
        raise CxrError(f"--bench {path}: no complete benchmark_model run (an 'Inference timings in us' line)")
    rows = [to_row(r) for r in runs]
    fill_speedups(rows)
    cores = meta.get("cores", "")
    device = {"hostname": meta.get("hostname") or path.stem, "cpu_model": meta.get("cpu_model"),
              "machine": meta.get("machine"), "cores": int(cores) if re.fullmatch(r"[0-9]{1,4}", cores) else None,
              "os": meta.get("os"), "python": None, "runtime": "LiteRT benchmark_model",
              "runtime_version": meta.get("runtime_version")}
    return {"format": BENCHMARK_MODEL_FORMAT, "created": None, "device": device, "origin": "benchmark_model",
            "source_file": str(path),
            "settings": {"runs": rows[0]["latency_ms"]["runs"], "warmup": rows[0]["latency_ms"]["warmup_runs"],
                         "threads": sorted({r["threads"] for r in rows if r["threads"] is not None}),
                         "delegates": sorted({r["delegate"] for r in rows}), "timer": "benchmark_model (us per run)"},
            "dataset": {"source": "benchmark_model: random inputs, no labels (latency only)", "path": None,
                        "split": None, "n": None, "classes": []},
            "models": {}, "results": rows,
            "notes": ["Parsed from LiteRT benchmark_model text output: latency only (random inputs, no labels, "
                      "accuracy null). Its headline is the average over the runs; the median only where the tool "
                      "printed one (newer versions)."]}
