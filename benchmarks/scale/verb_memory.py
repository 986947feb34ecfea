"""Peak RSS of `cxredge quantize` and `cxredge bench` as the split grows (issue 26): the code before the
streamed val/test passes (--old COMMIT, checked out with `git archive`) and this checkout, side by side in
one script run, at each size: old quantize, new quantize, old bench, new bench.

Data: the 5,600 real films of chest_xray_4class. Each size N has the real train split (3,920 films, what
quantize draws its 200 calibration images from) and val/ and test/ splits of N images each: copies 0, 1, 2...
of the 840 val (test) films, made by benchmarks/scale/scale.py's deterministic transform (copy 0 is the film,
copy k a seeded shift + zoom + gamma, seeded by (k, film index)), written once under --work.

Model: one tiny run (`cxredge train --variant fc --epochs 1 --alpha 0.25 --weights none`) on the first size;
each measurement gets a fresh copy of it (model.keras + run.json pointing at size N). quantize is
`--mode int8 --variant fc` (float32 + int8, val split); bench is the run's test split with the models that
quantize wrote (each side benches its own). Every command is a fresh child whose peak RSS is
`getrusage(RUSAGE_CHILDREN).ru_maxrss`. Both sides must give the same numbers: the script compares the
sidecars' validation and OOD blocks and bench.json (timings, memory and load left out) and records it.

    python benchmarks/scale/verb_memory.py --old 46b0b69 --sizes 840,4200
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/scale/, for scale.py
from common import ROOT, copy_run, cpu_summary, results_dir, save  # noqa: E402
from scale import SOURCE, write_copy  # noqa: E402

from cxredge.formats import unclocked  # noqa: E402

OUT = results_dir(__file__)
# what two benches of the same models may differ in: timings, memory, the machine's load, when and where
PATHS = {"origin", "path", "notes"}  # where the run and data lived: differ between the old and new trees


def build(n: int, work: Path) -> Path:
    """work/vm_<n>: the real train split and n-image val and test splits (copies of their films)."""
    out = work / f"vm_{n}"
    if (out / ".complete").exists():
        return out
    films = sorted(p for p in SOURCE.glob("*/*/*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    per_split = {s: sum(1 for f in films if f.parent.parent.name == s) for s in ("train", "val", "test")}
    jobs = []
    for idx, src in enumerate(films):  # idx: the film's index, as scale.py seeds its copies
        split, cls = src.parent.parent.name, src.parent.name
        copies = 1 if split == "train" else -(-n // per_split[split])
        jobs += [(str(src), f"{split}/{cls}/{src.stem}_c{k}.png", k, idx) for k in range(copies)]
    pool_dir = work / "pool"
    for _, rel, _, _ in jobs:
        (pool_dir / rel).parent.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(os.cpu_count()) as ex:
        list(ex.map(write_copy, [(s, str(pool_dir / rel), k, i) for s, rel, k, i in jobs], chunksize=64))
    for split in ("train", "val", "test"):
        mine = [rel for _, rel, k, _ in sorted(jobs, key=lambda j: (j[2], j[1])) if rel.startswith(split + "/")]
        for rel in mine[:len(mine) if split == "train" else n]:  # copy 0 of every film, then copy 1, ...
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            if not (out / rel).exists():
                os.link(pool_dir / rel, out / rel)
    (out / ".complete").write_text(str(n))
    return out


def child(code_root: Path, args: list[str]) -> dict:
    """`python -m cxredge ARGS` from `code_root` in a fresh child: its peak RSS (MB) and wall time."""
    cmd = [sys.executable, "-m", "cxredge", *map(str, args)]
    wrapper = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
               f"r = subprocess.run({cmd!r}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - t, r.returncode); "
               "sys.stderr.write(r.stderr[-3000:])")
    env = {**os.environ, "PYTHONPATH": str(code_root), "TF_CPP_MIN_LOG_LEVEL": "2", "COLUMNS": "120"}
    # cwd = the code's root: `python -m` puts the working folder first on sys.path, ahead of PYTHONPATH
    p = subprocess.run([sys.executable, "-c", wrapper], env=env, capture_output=True, text=True, cwd=code_root)
    rss_kib, wall, rc = p.stdout.split()[-3:]
    if int(rc):
        raise SystemExit(f"cxredge {' '.join(map(str, args))} failed ({code_root}):\n{p.stderr}")
    print(f"  {code_root.name}: cxredge {args[0]} ... {int(rss_kib) / 1024:.0f} MB, {float(wall):.0f} s", flush=True)
    return {"peak_rss_mb": round(int(rss_kib) / 1024, 1), "wall_s": round(float(wall), 1)}


def run_for(base: Path, data: Path, dst: Path) -> Path:
    """A fresh copy of the trained run whose run.json points at `data`."""
    run = copy_run(base, dst, ("fc",))
    doc = json.loads((run / "run.json").read_text())
    doc["data"]["path"] = str(data)
    (run / "run.json").write_text(json.dumps(doc, indent=2))
    return run


def same_results(old: Path, new: Path) -> dict:
    """Do both sides' sidecars (validation, OOD reference, model bytes) and bench.json agree?"""
    out = {}
    for precision in ("float32", "int8"):
        a, b = (json.loads((r / "fc" / f"{precision}.json").read_text()) for r in (old, new))
        out[f"{precision}_validation"] = a["validation"] == b["validation"]
        out[f"{precision}_ood"] = a["ood"] == b["ood"]
        out[f"{precision}_sha256"] = a["sha256"] == b["sha256"]
    a, b = (json.loads((r / "bench" / "test" / "bench.json").read_text()) for r in (old, new))
    out["bench_json_without_timings"] = unclocked(a, PATHS) == unclocked(b, PATHS)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", required=True, help="commit before the streamed passes")
    ap.add_argument("--sizes", default="840,4200", help="val and test images per split")
    ap.add_argument("--work", default="/tmp/cxredge-verb-memory")
    ap.add_argument("--tag", default="verb_memory")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in a.sizes.split(",")]
    old_root = work / f"old-{a.old}"
    if not old_root.exists():
        old_root.mkdir()
        tar = subprocess.run(["git", "-C", str(ROOT), "archive", a.old], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old_root)], input=tar, check=True)
    t0 = time.perf_counter()
    datasets = {n: build(n, work) for n in sizes}
    built = round(time.perf_counter() - t0, 1)
    base = work / "trained"
    if not (base / "fc" / "model.keras").exists():
        child(ROOT, ["train", "--data", datasets[sizes[0]], "--out", base, "--variant", "fc", "--epochs", "1",
                     "--alpha", "0.25", "--weights", "none", "--no-audit", "--cache-views", "1"])
    quantize = ["quantize", "--mode", "int8", "--variant", "fc"]
    doc = {"machine": cpu_summary(), "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
           "old_commit": a.old, "build_s": built,
           "commands": {"quantize": "cxredge " + " ".join(quantize) + " --run RUN",
                        "bench": "cxredge bench --run RUN (test split, fc/float32 + fc/int8)"},
           "train": "cxredge train --variant fc --epochs 1 --alpha 0.25 --weights none (once, on the first size)",
           "sizes": {}}
    for n in sizes:
        runs = {side: run_for(base, datasets[n], work / f"run_{side}_{n}") for side in ("old", "new")}
        code = {"old": old_root, "new": ROOT}
        rec = {}
        for verb, args in (("quantize", quantize), ("bench", ["bench"])):
            for side in ("old", "new"):  # alternated: the machine's load drifts, each pair sees about the same
                rec[f"{verb}_{side}"] = child(code[side], [*args, "--run", runs[side]])
        rec["identical"] = same_results(runs["old"], runs["new"])
        doc["sizes"][str(n)] = rec
        print(n, json.dumps(rec), flush=True)
        save(OUT, a.tag, doc, markdown(doc))


def markdown(doc: dict) -> str:
    lines = [f"# verb_memory: peak RSS of quantize and bench, old ({doc['old_commit']}) vs streamed", "",
             f"CPU: {doc['machine']}; load average at start {', '.join(map(str, doc['loadavg_at_start']))} "
             "(a shared, loaded machine: wall times are rough, peak RSS is the figure).", "",
             f"quantize: `{doc['commands']['quantize']}`; bench: `{doc['commands']['bench']}`; model: "
             f"{doc['train']}.", "",
             "| val = test images | quantize old MB | quantize new MB | bench old MB | bench new MB | "
             "quantize s old / new | bench s old / new | same numbers |",
             "|---:|---:|---:|---:|---:|---|---|---|"]
    for n, r in doc["sizes"].items():
        same = "yes" if all(r["identical"].values()) else \
            "NO: " + ", ".join(k for k, v in r["identical"].items() if not v)
        mb = [f"{r[f'{verb}_{side}']['peak_rss_mb']:.0f}" for verb in ("quantize", "bench") for side in ("old", "new")]
        wall = [f"{r[f'{verb}_old']['wall_s']:.0f} / {r[f'{verb}_new']['wall_s']:.0f}"
                for verb in ("quantize", "bench")]
        lines.append(f"| {int(n):,} | {' | '.join(mb)} | {' | '.join(wall)} | {same} |")
    sizes = list(doc["sizes"])
    if len(sizes) > 1:
        lo, hi = doc["sizes"][sizes[0]], doc["sizes"][sizes[-1]]
        extra = int(sizes[-1]) - int(sizes[0])
        keys = [f"{verb}_{side}" for verb in ("quantize", "bench") for side in ("old", "new")]
        growth = [f"{k.replace('_', ' ')} {(hi[k]['peak_rss_mb'] - lo[k]['peak_rss_mb']) * 1024 / extra:.1f} KB"
                  for k in keys]
        lines += ["", f"Peak RSS growth from {int(sizes[0]):,} to {int(sizes[-1]):,} images per split, per added "
                  f"image: {', '.join(growth)}."]
    lines += ["", "same numbers: both sides' float32 and int8 sidecars have the same validation block, OOD "
              "reference and model sha256, and their bench.json files are equal once timings, memory, load, "
              "paths and notes are left out."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
