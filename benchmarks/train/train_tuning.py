"""Tune the head settings on the VAL split from cached features (selection never looks at test).

The test metrics are printed too, for the record, but defaults are chosen by val loss / accuracy.
Features (original + mirrored train, val, test; extra augmented views on demand) are cached to
--cache once, then each configuration trains only the tail, as `cxredge train` does.

    flock /tmp/cxredge-heavy.lock .venv/bin/python benchmarks/train/train_tuning.py --data DIR \
        '[{"variant": "fc", "lr": 3e-4}, {"variant": "two_conv", "lr": 3e-4, "views": 3}]'

Results are appended to benchmarks/results/train/train_tuning.jsonl.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from cxredge.edge.data.stream import decode_paths
from cxredge.edge.evaluate.metrics import classification_metrics
from cxredge.keras import keras
from cxredge.train import fit as fitting
from cxredge.train.augment import view_transform
from cxredge.train.cache import compute_features, feature_extractor, predict, tail_model
from cxredge.train.data import load_data
from cxredge.train.settings import TrainSettings
from cxredge.train.variants import build_model, resolve_weights

ARGS = argparse.Namespace(data=None, cache="/tmp/cxredge_tuning")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from common import results_dir  # noqa: E402

OUT = results_dir(__file__) / "train_tuning.jsonl"
W = resolve_weights("bundled", 0.75)
CUTS = {"fc": "reshape_2", "one_conv": "dropout", "two_conv": "conv_dw_13_relu"}

def aug_views(F, n):
    out = {}
    for v in range(2, n):
        p = Path(ARGS.cache) / f"feats_view{v}.npz"
        if not p.exists():
            data = load_data(ARGS.data, console=Console())
            ref = build_model("fc", 4, 0.75, W)
            arrs = compute_features(feature_extractor(ref, list(CUTS.values())),
                                    decode_paths(data.splits["train"].paths), 32, view_transform(v, 0))
            np.savez(p, **dict(zip(CUTS.values(), arrs)))
        d = np.load(p)
        out[v] = {k: d[k] for k in d.files}
    return out

def run(F, variant, views=2, **kw):
    s = TrainSettings(variants=(variant,), **kw)
    keras.backend.clear_session()
    fitting.set_determinism(s.seed)
    m = build_model(variant, 4, 0.75, W, dropout=s.dropout)
    cut = CUTS[variant]
    tail = tail_model(m, cut)
    fitting.compile_model(tail, s.lr, s.label_smoothing)
    vs = [F[f"train/{cut}"], F[f"train_flip/{cut}"]][:views] + [AUG[v][cut] for v in range(2, views)]
    tr = fitting.CachedBatches(vs, F["y_train"], 4, s.batch_size, s.seed)
    val = (F[f"val/{cut}"], np.eye(4, dtype=np.float32)[F["y_val"]])
    t0 = time.perf_counter()
    h, _ = fitting.fit(tail, tr, val, s, s.epochs)
    sec = time.perf_counter() - t0
    pv, pt = predict(tail, F[f"val/{cut}"]), predict(tail, F[f"test/{cut}"])
    mv = classification_metrics(F["y_val"], pv.argmax(1), list("abcd"))
    mt = classification_metrics(F["y_test"], pt.argmax(1), list("abcd"))
    r = dict(variant=variant, views=views, cfg=kw, val_acc=round(mv["accuracy"], 4), val_f1=round(mv["macro_f1"], 4),
             val_loss=round(min(h["val_loss"]), 4), epochs=len(h["loss"]), best=h["best_epoch"], sec=round(sec, 1),
             test_acc=round(mt["accuracy"], 4), test_f1=round(mt["macro_f1"], 4))
    print(json.dumps(r), flush=True)
    with open(OUT, "a") as f:
        f.write(json.dumps(r) + "\n")
    return r

def base_features():
    path = Path(ARGS.cache) / "feats.npz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        data = load_data(ARGS.data, console=Console())
        ref = build_model("fc", 4, 0.75, W)
        ex = feature_extractor(ref, list(CUTS.values()))
        out = {}
        for split, view in (("train", 0), ("train_flip", 1), ("val", 0), ("test", 0)):
            arrs = compute_features(ex, decode_paths(data.splits[split.split("_")[0]].paths), 32,
                                    view_transform(view, 0))
            out.update({f"{split}/{n}": a for n, a in zip(CUTS.values(), arrs)})
            out[f"y_{split}"] = data.splits[split.split("_")[0]].y
        np.savez(path, **out)
    d = np.load(path)
    return {k: d[k] for k in d.files}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description="tune head settings on val from cached features")
    p.add_argument("--data", required=True)
    p.add_argument("--cache", default="/tmp/cxredge_tuning")
    p.add_argument("grid", help="JSON list of {variant, views?, <TrainSettings field>: value}")
    ARGS = p.parse_args()
    grid = json.loads(ARGS.grid)
    F = base_features()
    AUG = aug_views(F, max(c.get("views", 2) for c in grid))
    print("features ready", flush=True)
    for cfg in grid:
        v = cfg.pop("variant")
        run(F, v, **cfg)
