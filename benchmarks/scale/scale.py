"""Datasets bigger than memory (issue 26): peak RSS, feature-pass rate, epoch time and cache disk of
`cxredge train` at 5.6k, 20k, 50k (100k) images; and, side by side in the same run, today's in-memory
path (the commit given with --old, checked out with `git archive`) against the streaming one.

The big datasets are made from the 5,600 real films of chest_xray_4class by deterministic transforms
that keep the label and the split (a copy of a train film stays in train, so no leakage is created):
copy 0 is the film itself; copy k >= 1 is the film shifted by (dx, dy) in -8..8 pixels (edge pixels
repeated), zoomed in by 0-8% about its centre, with a gamma in 0.85..1.15, all drawn from a generator
seeded by (k, file index). No flips (the heart sits on the left). Written once as PNG under --work.

Every measurement is a fresh child process, run as `python -c` wrapper that reports the child's
`resource.getrusage(RUSAGE_CHILDREN).ru_maxrss` (peak resident set, KiB). Results:
benchmarks/results/scale/scale.json and scale.md, with `lscpu`'s CPU and the load average at the start.

    python benchmarks/scale/scale.py --sizes 5600,20000,50000 --old 5f9c4f2
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import results_dir  # noqa: E402

OUT = results_dir(__file__)
SOURCE = Path("/work/shared/data/chest_xray_4class")
SPLITS = ("train", "val", "test")


def transform(img: Image.Image, k: int, idx: int) -> Image.Image:
    """Copy k of a film: identity for k == 0, else a seeded shift + zoom + gamma (label-preserving)."""
    if k == 0:
        return img
    rng = np.random.default_rng([k, idx])
    dx, dy = rng.integers(-8, 9, 2)
    zoom, gamma = rng.uniform(0.0, 0.08), rng.uniform(0.85, 1.15)
    a = np.asarray(img.convert("L"), dtype=np.float32)
    h, w = a.shape
    a = np.pad(a, 8, mode="edge")[8 + dy:8 + dy + h, 8 + dx:8 + dx + w]
    m = int(round(zoom * h / 2))
    if m:
        a = np.asarray(Image.fromarray(a[m:h - m, m:w - m]).resize((w, h), Image.BILINEAR))
    a = 255.0 * (np.clip(a, 0, 255) / 255.0) ** gamma
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


def write_copy(job: tuple[str, str, int, int]) -> None:
    """One (source film, destination, copy k, film index) job: the film itself for k == 0, else its transform."""
    src, dst, k, idx = job
    if k == 0 and not Path(dst).exists():
        shutil.copyfile(src, dst)  # the film itself
    elif not Path(dst).exists():
        tmp = f"{dst}.{os.getpid()}.tmp"
        with Image.open(src) as im:
            transform(im, k, idx).save(tmp, format="PNG", optimize=False, compress_level=1)
        os.replace(tmp, dst)


def build(size: int, work: Path, largest: int) -> Path:
    """A dataset of `size` films: copies 0, 1, 2... of every source film, split by split, until full. The
    copies are made once for the largest size (work/pool) and hard-linked into each smaller one."""
    out = work / f"cxr_{size}"
    if (out / ".complete").exists():
        return out
    files = sorted(p for p in SOURCE.glob("*/*/*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    jobs = []
    for k in range(-(-largest // len(files))):
        for idx, src in enumerate(files):
            if len(jobs) == largest:
                break
            split, cls = src.parent.parent.name, src.parent.name
            jobs.append((str(src), f"{split}/{cls}/{src.stem}_c{k}.png", k, idx))
    pool_dir = work / "pool"
    for d in {str(Path(rel).parent) for _, rel, _, _ in jobs}:
        (pool_dir / d).mkdir(parents=True, exist_ok=True)
        (out / d).mkdir(parents=True, exist_ok=True)
    todo = [(src, str(pool_dir / rel), k, idx) for src, rel, k, idx in jobs]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(write_copy, todo, chunksize=64))
    for _, rel, _, _ in jobs[:size]:
        if not (out / rel).exists():
            os.link(pool_dir / rel, out / rel)
    (out / ".complete").write_text(str(size))
    return out


def measure(code_root: Path, data: Path, out: Path, args: list[str]) -> dict:
    """`cxredge train` from `code_root` in a fresh child; its peak RSS, wall time and run.json."""
    cmd = [sys.executable, "-m", "cxredge", "train", "--data", str(data), "--out", str(out), *args]
    wrapper = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
               f"r = subprocess.run({cmd!r}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - t, "
               "r.returncode); "
               "sys.stderr.write(r.stderr[-3000:])")
    env = {**os.environ, "PYTHONPATH": str(code_root), "TF_CPP_MIN_LOG_LEVEL": "2", "COLUMNS": "100"}
    # cwd = the code's root: `python -m` puts the working folder first on sys.path, ahead of PYTHONPATH
    p = subprocess.run([sys.executable, "-c", wrapper], env=env, capture_output=True, text=True, cwd=code_root)
    rss_kib, wall, rc = p.stdout.split()[-3:]
    if int(rc) != 0:
        raise SystemExit(f"train failed ({code_root}, {data}):\n{p.stderr}")
    run = json.loads((out / "run.json").read_text())
    hist = json.loads((out / "fc" / "history.json").read_text())
    fc = run.get("feature_cache") or {}
    if (code_root / "cxredge" / "train" / "store.py").exists() != bool(fc):
        raise SystemExit(f"{out}: run.json does not come from the code in {code_root}")
    passes = fc.get("forward_passes") or _old_passes(run, args)
    return {"peak_rss_mb": round(int(rss_kib) / 1024, 1), "wall_s": round(float(wall), 1),
            "feature_pass_s": run["feature_cache_seconds"], "forward_passes": passes,
            "feature_pass_images_per_s": round(passes / run["feature_cache_seconds"], 1),
            "backbone_images_per_s": fc.get("images_per_second"),
            "epoch_s": round(hist["epoch_seconds"][0], 2), "cache_bytes": fc.get("bytes"),
            "cache_dtypes": fc.get("dtypes"),
            "accuracy": json.loads((out / "fc" / "metrics.json").read_text())["accuracy"]}


def _old_passes(run: dict, args: list[str]) -> int:
    views = int(args[args.index("--cache-views") + 1]) if "--cache-views" in args else 2
    c = {s: sum(v.values()) for s, v in run["data"]["counts"].items()}
    return views * c["train"] + c["val"] + c["test"]


def machine() -> dict:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    cpu = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "?")
    return {"cpu": cpu, "cores": os.cpu_count(), "loadavg_at_start": os.getloadavg(),
            "python": platform.python_version()}



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="5600,20000,50000")
    ap.add_argument("--old", default="", help="commit of the in-memory path, compared at the first size")
    ap.add_argument("--work", default="/tmp/cxredge-scale")
    ap.add_argument("--model", default="bundled", help="bundled (alpha 0.75, ImageNet) or tiny (alpha 0.25, "
                    "random init: the same data path at a fraction of the backbone's cost, for the big sizes)")
    ap.add_argument("--cache-views", default="1")
    ap.add_argument("--tag", default="scale")
    ap.add_argument("--repeat", type=int, default=1, help="old/new pairs at the first size (alternated)")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    model = (["--alpha", "0.75", "--weights", "bundled"] if a.model == "bundled"
             else ["--alpha", "0.25", "--weights", "none"])
    common = ["--variant", "fc", "--epochs", "1", "--no-audit", "--cache-views", a.cache_views, *model]
    doc = {"machine": machine(), "command": "cxredge train " + " ".join(common), "sizes": {}, "old_vs_new": None}
    sizes = [int(s) for s in a.sizes.split(",")]
    t0 = time.perf_counter()
    build(max(sizes), work, max(sizes))  # every film written before any measurement
    doc["pool_build_s"] = round(time.perf_counter() - t0, 1)
    for i, size in enumerate(sizes):
        t0 = time.perf_counter()
        data = build(size, work, max(sizes))
        built = round(time.perf_counter() - t0, 1)
        if i == 0 and a.old:
            old_root = work / f"old-{a.old}"
            if not old_root.exists():
                old_root.mkdir()
                tar = subprocess.run(["git", "-C", str(ROOT), "archive", a.old], capture_output=True, check=True).stdout
                subprocess.run(["tar", "-x", "-C", str(old_root)], input=tar, check=True)
            pairs = []
            for r in range(a.repeat):  # old, new, old, new...: the machine's load drifts, pairs see the same
                old = measure(old_root, data, work / f"run_old_{size}", common)
                cache_dir = work / f"cache_{size}_{a.model}_{r}"
                shutil.rmtree(cache_dir, ignore_errors=True)
                new = measure(ROOT, data, work / f"run_new_{size}", [*common, "--cache-dir", str(cache_dir)])
                pairs.append({"old": old, "new": new,
                              "feature_pass_rate_new_over_old": round(new["feature_pass_images_per_s"]
                                                                      / old["feature_pass_images_per_s"], 3),
                              "peak_rss_new_over_old": round(new["peak_rss_mb"] / old["peak_rss_mb"], 3)})
                print(json.dumps(pairs[-1]), flush=True)
            ratios = sorted(p["feature_pass_rate_new_over_old"] for p in pairs)
            doc["old_vs_new"] = {"size": size, "old_commit": a.old, **pairs[-1], "pairs": pairs,
                                 "median_rate_ratio": round(float(np.median(ratios)), 3)}
            print(json.dumps(doc["old_vs_new"]), flush=True)
            rec = new
        else:
            rec = measure(ROOT, data, work / f"run_new_{size}", [*common, "--cache-dir", str(work / f"cache_{size}")])
        rec["build_s"] = built
        doc["sizes"][str(size)] = rec
        print(size, json.dumps(rec), flush=True)
        _report(doc, a.tag, sizes)


def _accs(ov: dict, side: str) -> str:
    return ", ".join(f"{p[side]['accuracy']:.4f}" for p in ov["pairs"])


def _report(doc: dict, tag: str, sizes: list[int]) -> None:
    got = [s for s in sizes if str(s) in doc["sizes"]]
    if len(got) > 1:
        lo, hi = doc["sizes"][str(got[0])], doc["sizes"][str(got[-1])]
        doc["ratio_largest_over_smallest"] = {"images": got[-1] / got[0],
                                              "peak_rss": round(hi["peak_rss_mb"] / lo["peak_rss_mb"], 3)}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{tag}.json").write_text(json.dumps(doc, indent=2) + "\n")
    m = doc["machine"]
    lines = [f"# {tag}: `{doc['command']}`", "",
             f"CPU: {m['cpu']}, {m['cores']} cores, load average at start "
             f"{', '.join(f'{x:.1f}' for x in m['loadavg_at_start'])} (a shared machine: loaded-machine timings).", "",
             "| images | peak RSS MB | feature pass img/s | backbone img/s | epoch s | cache MB | cache dtype |",
             "|---:|---:|---:|---:|---:|---:|---|"]
    for s in got:
        r = doc["sizes"][str(s)]
        lines.append(f"| {s} | {r['peak_rss_mb']} | {r['feature_pass_images_per_s']} | "
                     f"{r['backbone_images_per_s']} | {r['epoch_s']} | {(r['cache_bytes'] or 0) / 1e6:.0f} | "
                     f"{r['cache_dtypes']} |")
    if doc.get("ratio_largest_over_smallest"):
        r = doc["ratio_largest_over_smallest"]
        lines += ["", f"Peak RSS ratio {got[-1]} / {got[0]} images: {r['peak_rss']} "
                  f"(for {r['images']:.1f}x the images)."]
    ov = doc.get("old_vs_new")
    if ov:
        lines += ["", f"Side by side at {ov['size']} images (same run): in-memory path ({ov['old_commit']}) "
                  f"{ov['old']['feature_pass_images_per_s']} img/s, peak RSS {ov['old']['peak_rss_mb']} MB; streaming "
                  f"{ov['new']['feature_pass_images_per_s']} img/s, peak RSS {ov['new']['peak_rss_mb']} MB: rate ratio "
                  f"{ov['feature_pass_rate_new_over_old']}, RSS ratio {ov['peak_rss_new_over_old']}. "
                  "Feature pass img/s = forward passes / feature-cache seconds (model build included, both sides)."]
        if len(ov.get("pairs", [])) > 1:
            lines += ["", "Pairs run alternately (old, new, old, new...): rate ratios "
                      f"{', '.join(str(p['feature_pass_rate_new_over_old']) for p in ov['pairs'])}; "
                      f"median {ov['median_rate_ratio']}; accuracy old {_accs(ov, 'old')}, new {_accs(ov, 'new')}."]
    (OUT / f"{tag}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
