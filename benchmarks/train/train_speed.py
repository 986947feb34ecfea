"""Cached-feature fit vs plain full-network fit, side by side in one run, on the same data.

Both fits train the `fc` head of the same model (same seed, same initial weights, same batch order,
same epochs); the plain fit pushes every image through the frozen MobileNet every epoch, the cached
fit pushes each image through it once. Prints the per-epoch ratio and writes
benchmarks/results/train/train_speed.json and .md with the machine info.

    flock /tmp/cxredge-heavy.lock .venv/bin/python benchmarks/train/train_speed.py --data DIR [--train-images 800]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from cxredge.edge.data.dataset import load_split, scan
from cxredge.edge.evaluate.metrics import classification_metrics
from cxredge.io import write_json, write_text
from cxredge.keras import keras, tf
from cxredge.train import fit as fitting
from cxredge.train.cache import compute_features, cut_layer_name, feature_extractor, predict, tail_model
from cxredge.train.settings import TrainSettings
from cxredge.train.variants import build_model, resolve_weights

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from common import results_dir  # noqa: E402

RESULTS = results_dir(__file__)


class ImageBatches(fitting.CachedBatches):
    """The same batches (order, labels) as the cached fit, but raw images as float32."""

    def __getitem__(self, i):
        x, y, w = super().__getitem__(i)
        return x.astype(np.float32), y, w


def one_fit(kind: str, data: dict, args, weights) -> dict:
    keras.backend.clear_session()
    fitting.set_determinism(args.seed)
    model = build_model("fc", data["k"], 0.75, weights)
    settings = TrainSettings(variants=("fc",), epochs=args.epochs, patience=0, dropout=0.0, label_smoothing=0.0,
                             lr=args.lr, seed=args.seed)
    t0 = time.perf_counter()
    cache_s = 0.0
    if kind == "cached":
        cut = cut_layer_name(model)
        ex = feature_extractor(model, [cut])
        tr, = compute_features(ex, data["train"].x)
        va, = compute_features(ex, data["val"].x)
        cache_s = time.perf_counter() - t0
        net = tail_model(model, cut)
        batches = fitting.CachedBatches([tr], data["train"].y, data["k"], args.batch_size, args.seed)
        val = (va, np.eye(data["k"], dtype=np.float32)[data["val"].y])
    else:
        net = model
        batches = ImageBatches([data["train"].x], data["train"].y, data["k"], args.batch_size, args.seed)
        val = (data["val"].x.astype(np.float32), np.eye(data["k"], dtype=np.float32)[data["val"].y])
    fitting.compile_model(net, args.lr, 0.0)
    history, timer = fitting.fit(net, batches, val, settings, args.epochs)
    total = time.perf_counter() - t0
    probs = predict(model, data["val"].x, 32)  # the full model in both cases: same evaluation
    m = classification_metrics(data["val"].y, probs.argmax(1), data["classes"])
    steady = timer.epoch_seconds[1:] or timer.epoch_seconds
    return {"kind": kind, "epoch_seconds": [round(s, 3) for s in timer.epoch_seconds],
            "steady_epoch_seconds": round(float(np.median(steady)), 3), "cache_seconds": round(cache_s, 2),
            "total_seconds": round(total, 2), "val_accuracy": round(m["accuracy"], 4),
            "val_macro_f1": round(m["macro_f1"], 4), "final_train_loss": round(history["loss"][-1], 4)}


def machine() -> dict:
    cpu = ""
    if Path("/proc/cpuinfo").exists():
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), "")
    return {"platform": platform.platform(), "cpu": cpu or platform.processor(), "cores": os.cpu_count(),
            "python": platform.python_version(), "tensorflow": tf.__version__,
            "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--train-images", type=int, default=800)
    p.add_argument("--val-images", type=int, default=200)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    ds = scan(args.data)
    data = {"train": load_split(ds, "train", limit=args.train_images),
            "val": load_split(ds, "val", limit=args.val_images),
            "classes": ds.classes, "k": len(ds.classes)}
    weights = resolve_weights("bundled", 0.75)
    rows = [one_fit("plain", data, args, weights), one_fit("cached", data, args, weights)]
    plain, cached = rows
    ratio = plain["steady_epoch_seconds"] / cached["steady_epoch_seconds"]
    total_ratio = plain["total_seconds"] / cached["total_seconds"]
    result = {"benchmark": "train_speed", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": machine(), "setup": {**vars(args), "variant": "fc", "alpha": 0.75, "weights": "bundled",
                                               "train_images": len(data["train"].y), "val_images": len(data["val"].y)},
              "results": rows, "per_epoch_speedup": round(ratio, 1), "total_speedup_incl_cache": round(total_ratio, 2)}
    write_json(RESULTS / "train_speed.json", result)
    write_text(RESULTS / "train_speed.md", markdown(result))
    for r in rows:
        print(f"{r['kind']:>6}: {r['steady_epoch_seconds']:.3f} s/epoch (epochs {r['epoch_seconds']}), cache "
              f"{r['cache_seconds']} s, total {r['total_seconds']} s, val accuracy {r['val_accuracy']}, "
              f"macro-F1 {r['val_macro_f1']}")
    print(f"per-epoch speedup: {ratio:.1f}x; total incl. cache over {args.epochs} epochs: {total_ratio:.2f}x")


def markdown(r: dict) -> str:
    m, s = r["machine"], r["setup"]
    lines = [f"# train_speed: cached-feature fit vs plain full-network fit ({r['created']})", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['platform']}, TensorFlow {m['tensorflow']}, "
             f"GPUs: {m['gpus'] or 'none'}.", "",
             f"Setup: variant fc, MobileNet alpha 0.75 (bundled ImageNet weights), {s['train_images']} train / "
             f"{s['val_images']} val images of `{s['data']}`, {s['epochs']} epochs, batch {s['batch_size']}, "
             f"Adam lr {s['lr']}, seed {s['seed']}; same initial weights and batch order in both fits.", "",
             "| fit | s/epoch (median after the first) | per-epoch times | cache s | total s | val accuracy "
             "| val macro-F1 |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for x in r["results"]:
        lines.append(f"| {x['kind']} | {x['steady_epoch_seconds']:.3f} | {x['epoch_seconds']} | {x['cache_seconds']} | "
                     f"{x['total_seconds']} | {x['val_accuracy']} | {x['val_macro_f1']} |")
    lines += ["", f"**Per-epoch speedup: {r['per_epoch_speedup']}x**; total including the one-off cache over "
              f"{s['epochs']} epochs: {r['total_speedup_incl_cache']}x (it grows with the epoch count).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
