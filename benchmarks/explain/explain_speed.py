"""How fast is `cxredge explain`? Occlusion saliency of one image, batched vs one invoke per patch, side by side.

    flock /tmp/cxredge-heavy.lock .venv/bin/python benchmarks/explain/explain_speed.py \
        [--run /work/runs/full-i13x] [--images 5]

For the run's two_conv int8.tflite (and float32.tflite for reference), at the default grid (patch 32,
stride 16: 13 x 13 = 169 occlusions + the image itself), per configuration (batch per invoke x threads):
the wall time of cxredge.edge.explain.occlusion.occlusion() per image (model already loaded), over `--images` test
images (one per class in turn), configurations interleaved per image so they share the machine's state.
Reports the median seconds per image, the ratio to batch 1 / 1 thread, and the largest heatmap
difference to batch 1 (batched and unbatched must give the same map). Also one end-to-end
`python -m cxredge explain` of one image (process start, model load, occlusion, PNG + JSON), timed
as a subprocess. Target: < 5 s per image with int8 on 2 cores.
Writes benchmarks/results/explain/explain_speed.json and .md with the machine facts.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from common import cli, results_dir  # noqa: E402

from cxredge.edge.data.images import load_image  # noqa: E402
from cxredge.edge.explain.occlusion import BatchRunner, OcclusionSettings, occlusion  # noqa: E402
from cxredge.edge.runtime.device import device_info  # noqa: E402
from cxredge.edge.runtime.interpreter import TFLiteModel, find_runtime  # noqa: E402
from cxredge.io import write_json, write_text  # noqa: E402

CONFIGS = [("int8", 1, 1), ("int8", 4, 1), ("int8", 8, 1), ("int8", 16, 1), ("int8", 32, 1),
           ("int8", 1, 2), ("int8", 4, 2), ("int8", 8, 2), ("int8", 16, 2),
           ("float32", 1, 1), ("float32", 8, 1), ("float32", 1, 2), ("float32", 8, 2)]
DATA = Path("/work/shared/data/chest_xray_4class/test")


def test_images(data: Path, n: int) -> list[Path]:
    classes = sorted(d for d in data.iterdir() if d.is_dir())
    per = [sorted(c.glob("*.png")) for c in classes]
    return [per[i % len(per)][i // len(per)] for i in range(n)]


def end_to_end(model: Path, image: Path) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        cli("explain", model, image, "--out", tmp, "--json", quiet=True)
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=Path("/work/runs/full-i13x"))
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--images", type=int, default=5)
    ap.add_argument("--out", type=Path, default=results_dir(__file__))
    a = ap.parse_args()
    settings = OcclusionSettings()
    files = test_images(a.data, a.images)
    runners = {}
    for prec, batch, threads in CONFIGS:
        runner = BatchRunner(TFLiteModel(a.run / "two_conv" / f"{prec}.tflite", threads=threads), batch)
        occlusion(runner, load_image(files[0]), settings, runner.batch)  # warm-up (first invokes, allocation)
        runners[(prec, batch, threads)] = runner
    times = {k: [] for k in runners}
    diffs = {k: 0.0 for k in runners}
    load_before = os.getloadavg()
    keys = list(runners)
    for n, f in enumerate(files):
        img = load_image(f)
        maps = {}
        for key in keys[n % len(keys):] + keys[:n % len(keys)]:  # rotate the order: no configuration always first
            runner = runners[key]
            t0 = time.perf_counter()
            sal = occlusion(runner, img, settings, runner.batch)
            times[key].append(time.perf_counter() - t0)
            maps[key] = sal.heatmap
        for key in runners:
            diffs[key] = max(diffs[key], float(np.abs(maps[key] - maps[(key[0], 1, 1)]).max()))
        print(f"{f.name}: " + "  ".join(f"{k[0]} b{k[1]} t{k[2]} {times[k][-1]:.2f}s" for k in keys), flush=True)
    load_after = os.getloadavg()
    rows = []
    for key, runner in runners.items():
        med = statistics.median(times[key])
        rows.append({"precision": key[0], "batch": key[1], "batch_used": runner.batch, "threads": key[2],
                     "median_s": med, "times_s": times[key], "ms_per_evaluation": 1000 * med / 170,
                     "speedup_vs_batch1_1thread": statistics.median(times[(key[0], 1, 1)]) / med,
                     "max_abs_heatmap_diff_vs_batch1": diffs[key], "under_5s": med < 5.0})
    e2e = [end_to_end(a.run / "two_conv" / "int8.tflite", f) for f in files[:3]]
    doc = {"device": device_info(find_runtime()), "model": str(a.run / "two_conv"), "images": [str(f) for f in files],
           "settings": {"patch": settings.patch, "stride": settings.stride, "fill": settings.fill, "occlusions": 169},
           "load_average_1_5_15": {"before": load_before, "after": load_after},
           "results": rows, "end_to_end_cli_s": {"times": e2e, "median": statistics.median(e2e)}}
    a.out.mkdir(parents=True, exist_ok=True)
    write_json(a.out / "explain_speed.json", doc)
    write_text(a.out / "explain_speed.md", markdown(doc))
    print(markdown(doc))


def markdown(doc: dict) -> str:
    d = doc["device"]
    lines = ["# cxredge explain: seconds per image (occlusion, default grid)", "",
             f"{d['cpu_model']}, {d['cores']} cores, {d['runtime']} {d['runtime_version']}, XNNPACK; two_conv of "
             f"`{doc['model']}` (chest_xray_4class); patch {doc['settings']['patch']}, stride "
             f"{doc['settings']['stride']}: "
             f"169 occlusions + the image = 170 model evaluations per image; median over {len(doc['images'])} test "
             "images, configurations interleaved per image (order rotated); model loaded and warmed up beforehand. "
             f"Load average (1 min) {doc['load_average_1_5_15']['before'][0]:.1f} before, "
             f"{doc['load_average_1_5_15']['after'][0]:.1f} after: the machine is shared, so small ratios are noise.",
             "",
             "| model | batch per invoke | threads | median s / image | ms / evaluation | vs batch 1, 1 thread | max "
             "heatmap diff vs batch 1 | < 5 s |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in doc["results"]:
        lines.append(f"| {r['precision']} | {r['batch_used']} | {r['threads']} | {r['median_s']:.3f} | "
                     f"{r['ms_per_evaluation']:.2f} | "
                     f"{r['speedup_vs_batch1_1thread']:.2f}x | {r['max_abs_heatmap_diff_vs_batch1']:.2g} | "
                     f"{'yes' if r['under_5s'] else 'NO'} |")
    e = doc["end_to_end_cli_s"]
    lines += ["", f"End to end, `python -m cxredge explain two_conv/int8.tflite IMAGE` (process start, model load, "
              f"batch self-check, occlusion, overlay PNG, grid PNG, JSON; defaults: batch 8, threads = cores, at most "
              f"4): median {e['median']:.2f} s "
              f"({', '.join(f'{t:.2f}' for t in e['times'])})."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
