"""Can a training trick lift the fc head (frozen 1000-d ImageNet logits -> Dense 1024/512/C)?

Every trick keeps the saved model the plain model of cxredge/train/variants.py; each is tried with several seeds on
the cached logits of train_tuning.py's feature cache (original + mirrored train views, val, test),
and is judged on the VAL split (test is printed for the record only):

  base     the current defaults (lr 3e-4, dropout 0.3, label smoothing 0.1, batch 32, early stopping
           on val loss with patience 4, LR x0.3 after 2 flat epochs, at most 20 epochs)
  mixup    feature-space mixup (Beta(a, a) weights within a batch, labels mixed alike)
  ema      an exponential moving average of the weights (Adam use_ema), 20 epochs, no early stop
  wd       L2 weight decay on the Dense kernels
  std      inputs standardized per dimension with the train mean / sd (foldable into head_fc1)

The head here is a stand-alone copy of the fc tail (same layers, same optimiser and callbacks),
so its initial weights differ from `cxredge train`'s for the same seed; compare rows within this
file, not with train_seeds.md. Writes benchmarks/results/train/head_tricks.{jsonl,md}.

    flock /tmp/cxredge-heavy.lock .venv/bin/python benchmarks/train/head_tricks.py \
        --data ../shared/data/chest_xray_4class
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import train_tuning as tuning  # benchmarks/ is on sys.path when this script runs

from cxredge.keras import keras
from cxredge.train.fit import CachedBatches

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from common import results_dir  # noqa: E402

RESULTS = results_dir(__file__)
CUT = "reshape_2"
TRICKS = {"base": {}, "mixup 0.2": {"mixup": 0.2}, "mixup 0.4": {"mixup": 0.4}, "ema 0.99": {"ema": 0.99},
          "wd 1e-4": {"wd": 1e-4}, "std": {"std": True}}


class MixupBatches(CachedBatches):
    """cxredge train's CachedBatches (one random view per sample per epoch), plus optional feature
    mixup within each batch (drawn from the same seeded generator)."""

    def __init__(self, views, y, seed, mixup=0.0, batch_size=32):
        super().__init__(views, y, 4, batch_size, seed)
        self.mixup = mixup

    def __getitem__(self, i):
        x, y, w = super().__getitem__(i)
        if self.mixup:
            lam = self.rng.beta(self.mixup, self.mixup, len(x)).astype(np.float32)[:, None]
            perm = self.rng.permutation(len(x))
            x, y = lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm]
        return x, y, w


def head(wd: float) -> keras.Model:
    reg = keras.regularizers.l2(wd) if wd else None
    inp = keras.Input((1000,))
    x = keras.layers.Dense(1024, activation="relu", kernel_regularizer=reg)(inp)
    x = keras.layers.Dropout(0.3)(x)
    x = keras.layers.Dense(512, activation="relu", kernel_regularizer=reg)(x)
    x = keras.layers.Dropout(0.3)(x)
    return keras.Model(inp, keras.layers.Dense(4, activation="softmax")(x))


def run(F: dict, name: str, seed: int, mixup=0.0, ema=0.0, wd=0.0, std=False) -> dict:
    views = [F[f"train/{CUT}"], F[f"train_flip/{CUT}"]]
    val, test = F[f"val/{CUT}"], F[f"test/{CUT}"]
    if std:
        mu, sd = views[0].mean(0), views[0].std(0) + 1e-6
        views, val, test = [(v - mu) / sd for v in views], (val - mu) / sd, (test - mu) / sd
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = head(wd)
    opt = keras.optimizers.Adam(3e-4, use_ema=bool(ema), ema_momentum=ema or 0.99)
    model.compile(opt, keras.losses.CategoricalCrossentropy(label_smoothing=0.1), ["accuracy"])
    callbacks = [keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3, patience=2, min_lr=1e-7)]
    if not ema:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=4, restore_best_weights=True))
    h = model.fit(MixupBatches(views, F["y_train"], seed, mixup), validation_data=(val, np.eye(4)[F["y_val"]]),
                  epochs=20, verbose=0, callbacks=callbacks)
    pv, pt = model.predict(val, verbose=0, batch_size=256), model.predict(test, verbose=0, batch_size=256)
    row = {"trick": name, "seed": seed, "epochs": len(h.history["loss"]),
           "val_acc": round(float((pv.argmax(1) == F["y_val"]).mean()), 4),
           "val_nll": round(float(-np.log(pv[np.arange(len(pv)), F["y_val"]] + 1e-9).mean()), 4),
           "test_acc": round(float((pt.argmax(1) == F["y_test"]).mean()), 4)}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--cache", default="/tmp/cxredge_tuning")
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()
    tuning.ARGS = argparse.Namespace(data=args.data, cache=args.cache)
    F = tuning.base_features()
    rows = [run(F, name, seed, **kw) for name, kw in TRICKS.items() for seed in range(args.seeds)]
    lines = ["# fc head: training tricks on the cached logits (val decides; test for the record)", "",
             f"Data `{args.data}`, seeds 0-{args.seeds - 1}, stand-alone fc tail (see the script's docstring).", "",
             "| trick | val accuracy (mean ± sd) | val NLL | test accuracy (mean ± sd) | epochs |",
             "|---|---:|---:|---:|---:|"]
    for name in TRICKS:
        mine = [r for r in rows if r["trick"] == name]
        acc = [r["val_acc"] for r in mine]
        test = [r["test_acc"] for r in mine]
        lines.append(f"| {name} | {statistics.fmean(acc):.3f} ± {statistics.stdev(acc):.3f} | "
                     f"{statistics.fmean(r['val_nll'] for r in mine):.3f} | {statistics.fmean(test):.3f} ± "
                     f"{statistics.stdev(test):.3f} | {'/'.join(str(r['epochs']) for r in mine)} |")
    (RESULTS / "head_tricks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (RESULTS / "head_tricks.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
