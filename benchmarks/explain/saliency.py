"""Where do the two_conv models look on chest_xray_4class? The must-show of `cxredge explain`, plus per-class
statistics.

    flock /tmp/cxredge-heavy.lock .venv/bin/python benchmarks/explain/saliency.py [--run /work/runs/full-i13x] [--n 50]

1. The real CLI: `cxredge explain two_conv/float32.tflite TEST --per-class 2 --compare two_conv/int8.tflite`
   into benchmarks/results/explain/saliency/explain/ (grid.png, overlays, explain.json; the .npy maps are dropped
   to keep the folder small), with the run's run.json next to it, then `cxredge report` on that folder:
   report.md shows the grid and the per-class border share.
2. Statistics on a seeded random sample of `--n` test images per class: occlusion with float32 and int8
   (default settings) and Grad-CAM of model.keras (conv_pw_13_relu), all for the float model's predicted
   class. Per class: border share (mean, sd, bootstrap 95% CI of the mean) per method, float-vs-int8 and
   occlusion-vs-Grad-CAM correlations, accuracy; class-mean heatmaps (mean_maps.png). Written to
   classes.json and classes.md (model outputs and maps go to RUN/explain_sample, outside the repo).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from common import ROOT, cli, results_dir  # noqa: E402

from cxredge.edge.data.images import load_image  # noqa: E402
from cxredge.edge.explain import render as R  # noqa: E402
from cxredge.edge.explain.occlusion import OcclusionSettings  # noqa: E402
from cxredge.edge.explain.run import explain_all, tflite_explainer  # noqa: E402
from cxredge.edge.runtime.device import device_info  # noqa: E402
from cxredge.edge.runtime.interpreter import find_runtime  # noqa: E402
from cxredge.io import read_json, write_json, write_text  # noqa: E402

DATA = Path("/work/shared/data/chest_xray_4class/test")
OUT = results_dir(__file__) / "saliency"


def must_show(run: Path, data: Path, out: Path) -> None:
    # repo-relative paths in the report
    out = out.resolve().relative_to(ROOT) if out.resolve().is_relative_to(ROOT) else out
    ex = out / "explain"
    if (ROOT / ex).exists():
        shutil.rmtree(ROOT / ex)
    cli("explain", str(run / "two_conv" / "float32.tflite"), str(data), "--per-class", "2",
        "--compare", str(run / "two_conv" / "int8.tflite"), "--out", str(ex))
    shutil.rmtree(ROOT / ex / "heatmaps")  # 224 x 224 float maps: 200 KB each, not needed for the figures
    shutil.copy(run / "run.json", ROOT / out / "run.json")
    cli("report", "--run", str(out), capture=False)
    (ROOT / out / "report.html").unlink()  # the .md twin links the same PNGs; the HTML would embed them again


def sample(data: Path, n: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    files = []
    for c in sorted(d for d in data.iterdir() if d.is_dir()):
        pool = sorted(c.glob("*.png"))
        files += [pool[i] for i in sorted(rng.choice(len(pool), size=min(n, len(pool)), replace=False))]
    return files


def statistics_run(run: Path, files: list[Path], work: Path) -> dict:
    from cxredge.train.gradcam import keras_explainer

    s = OcclusionSettings()
    exs = [tflite_explainer(run / "two_conv" / f"{p}.tflite", run / "two_conv" / f"{p}.tflite", s, 16, 1, "xnnpack",
                            None)
           for p in ("float32", "int8")]
    exs.append(keras_explainer(run / "two_conv" / "model.keras", s, "gradcam", 1, None))
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("saliency", total=len(files) * sum(e.steps for e in exs))
        t0 = time.perf_counter()
        doc = explain_all(files, exs, exs[0].info["labels"], s, work, 224, progress=lambda k: bar.advance(task, k))
    doc["wall_s"] = time.perf_counter() - t0
    return doc


def bootstrap_ci(x: np.ndarray, seed: int = 0, reps: int = 2000) -> list[float]:
    rng = np.random.default_rng(seed)
    means = rng.choice(x, size=(reps, len(x)), replace=True).mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def class_stats(doc: dict) -> dict:
    keys = [m["key"] for m in doc["models"]]
    out = {}
    for c in doc["labels"]:
        group = [e for e in doc["images"] if e["true_class"] == c]
        row: dict = {"n": len(group)}
        for k in keys:
            b = np.array([e[k]["border_share"] for e in group if e[k]["border_share"] is not None])
            row[k] = {"border_share_mean": float(b.mean()), "border_share_sd": float(b.std(ddof=1)),
                      "border_share_ci95": bootstrap_ci(b), "n_with_positive_saliency": int(len(b)),
                      "accuracy": float(np.mean([e[k]["label"] == c for e in group]))}
            if k != keys[0]:
                for m in ("pearson", "spearman"):
                    v = np.array([e[k]["vs_" + keys[0]][m] for e in group if e[k]["vs_" + keys[0]][m] is not None])
                    row[k][f"{m}_vs_{keys[0]}_mean"] = float(v.mean())
                    row[k][f"{m}_vs_{keys[0]}_median"] = float(np.median(v))
        out[c] = row
    return out


SIDES = {"top": (slice(0, 28), slice(None)), "bottom": (slice(196, None), slice(None)),
         "left": (slice(28, 196), slice(0, 28)), "right": (slice(28, 196), slice(196, None)),
         "upper_quarter": (slice(0, 56), slice(None))}


def breakdown(doc: dict, work: Path) -> dict:
    """Per class and model: where in the border the positive saliency sits (each side of the 28 px strip, and
    the upper quarter of the film, rows 0-55, added after the class-mean maps showed COVID's top band), next to
    each region's area share; and how often a map is dominated by negative drops (|min| > max)."""
    out: dict = {}
    for c in doc["labels"]:
        group = [e for e in doc["images"] if e["true_class"] == c]
        out[c] = {}
        for m in doc["models"]:
            k = m["key"]
            maps = [np.clip(np.load(work / e[k]["heatmap_npy"]), 0, None) for e in group]
            row = {}
            for side, (ys, xs) in SIDES.items():
                row[f"{side}_share"] = float(np.mean([h[ys, xs].sum() / h.sum() for h in maps if h.sum() > 0]))
            row["negative_dominated"] = float(np.mean([-e[k]["min_drop"] > e[k]["max_drop"] for e in group]))
            out[c][k] = row
    area = np.zeros((224, 224))
    out["area_share"] = {f"{side}_share": area[ys, xs].size / area.size for side, (ys, xs) in SIDES.items()}
    return out


def mean_maps(doc: dict, work: Path, out: Path) -> Path:
    """Per class and method: the mean of each image's positive map scaled to sum 1, over the class's mean film."""
    keys = [m["key"] for m in doc["models"]]
    tiles, labels = [], []
    for c in doc["labels"]:
        group = [e for e in doc["images"] if e["true_class"] == c]
        film = np.mean([load_image(e["image"]).astype(np.float64) for e in group], axis=0).round().astype(np.uint8)
        row = []
        for k in keys:
            maps = [np.clip(np.load(work / e[k]["heatmap_npy"]), 0, None) for e in group]
            mean = np.mean([m / m.sum() for m in maps if m.sum() > 0], axis=0)
            share = np.mean([e[k]["border_share"] for e in group if e[k]["border_share"] is not None])
            fig = R.figure(film, mean / mean.max(), [f"{c}: {k}", f"mean of {len(group)}; border share {share:.2f}"],
                           doc["settings"]["border"], vmax=1.0)
            row.append(R.save_png(fig, work / "mean_maps" / f"{c}_{k}.png", 260))
        tiles.append(row)
        labels.append(c)
    R.save_png(R.grid(tiles, labels, keys, tile_width=200), out / "mean_maps.png")
    return out / "mean_maps.png"


def markdown(res: dict) -> str:
    keys = res["models"]
    d = res["device"]
    lines = ["# Saliency per class: two_conv float32 / int8 (occlusion) and model.keras (Grad-CAM)", "",
             f"`{res['run']}`; {res['n_per_class']} test images per class (seeded random sample, seed 0) of "
             f"chest_xray_4class; occlusion patch 32, stride 16, gray 128; Grad-CAM at conv_pw_13_relu; all maps for "
             f"the float32 model's predicted class. Border strip: {res['regions']['definition']} "
             f"({res['regions']['border_area_share']:.1%} of the area). {d['cpu_model']}, {d['cores']} cores; wall "
             f"{res['wall_s']:.0f} s for {res['n_images']} images x 3 maps.", "",
             "| class | n | " + " | ".join(f"{k} border share (95% CI)" for k in keys) + " | " +
             " | ".join(f"{k} vs {keys[0]}: Pearson / Spearman (mean)" for k in keys[1:]) + " | " +
             " | ".join(f"{k} accuracy" for k in keys[:2]) + " |",
             "|---|---:|" + "---:|" * (2 * len(keys) + 1)]
    for c, row in res["per_class"].items():
        cells = [c, str(row["n"])]
        cells += [f"{row[k]['border_share_mean']:.3f} "
                  f"({row[k]['border_share_ci95'][0]:.3f}-{row[k]['border_share_ci95'][1]:.3f})"
                  for k in keys]
        cells += [f"{row[k][f'pearson_vs_{keys[0]}_mean']:.3f} / {row[k][f'spearman_vs_{keys[0]}_mean']:.3f}"
                  for k in keys[1:]]
        cells += [f"{row[k]['accuracy']:.2f}" for k in keys[:2]]
        lines.append("| " + " | ".join(cells) + " |")
    b = res["regions_by_class"]
    sides = list(b["area_share"])
    lines += ["", "Where the positive saliency sits (mean share per image; the area share is what a map that ignores "
              "position gives). `upper_quarter` (rows 0-55) was added after the class-mean maps showed a band at the "
              "top for COVID: a post-hoc region. `negative` = share of maps where the largest rise of the class "
              "probability under occlusion beats the largest drop.", "",
              "| class | model | " + " | ".join(sides) + " | negative |", "|---|---|" + "---:|" * (len(sides) + 1),
              "| (area) | | " + " | ".join(f"{b['area_share'][x]:.3f}" for x in sides) + " | |"]
    for c in res["per_class"]:
        for k in keys:
            lines.append(f"| {c} | {k} | " + " | ".join(f"{b[c][k][x]:.3f}" for x in sides)
                         + f" | {b[c][k]['negative_dominated']:.2f} |")
    lines += ["", "![class-mean heatmaps](mean_maps.png)", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=Path("/work/runs/full-i13x"))
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--skip-must-show", action="store_true")
    ap.add_argument("--reuse", action="store_true",
                    help="re-read RUN/explain_sample/explain.json instead of re-running")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if not a.skip_must_show:
        must_show(a.run, a.data, a.out)
    files = sample(a.data, a.n)
    work = a.run / "explain_sample"
    if a.reuse:  # the maps of the last full run; its wall time from the classes.json it wrote
        doc = {**read_json(work / "explain.json"), "wall_s": read_json(a.out / "classes.json")["wall_s"]}
    else:
        doc = statistics_run(a.run, files, work)
    res = {"device": device_info(find_runtime()), "run": str(a.run), "n_per_class": a.n, "n_images": len(doc["images"]),
           "models": [m["key"] for m in doc["models"]], "settings": doc["settings"], "regions": doc["regions"],
           "wall_s": doc["wall_s"], "per_class": class_stats(doc), "regions_by_class": breakdown(doc, work),
           "summary_all": doc["summary"]["all"],
           "images": [{"image": Path(e["image"]).name, "true_class": e["true_class"],
                       **{k: {"label": e[k]["label"], "probability": round(e[k]["probability"], 4),
                              "border_share": e[k]["border_share"], **({"vs": e[k]["vs_" + doc["models"][0]["key"]]}
                                                                       if k != doc["models"][0]["key"] else {})}
                          for k in (m["key"] for m in doc["models"])}} for e in doc["images"]]}
    mean_maps(doc, work, a.out)
    write_json(a.out / "classes.json", res)
    write_text(a.out / "classes.md", markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
