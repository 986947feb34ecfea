"""What `--variant finetune` reaches and costs, next to the cached two_conv head, on one dataset.

Superseded by benchmarks/train/finetune_sweep.py (the whole-network recipe). This script keeps the earlier
settings (last K blocks, BN in inference mode, the mlp head of cxredge/train/variants.py, plain Adam at a constant rate,
the standard augmentation); phase 1 now trains the head on the cached logits, not the two_conv head,
so finetune.md / finetune_4blocks.md are not reproduced exactly.

Runs `cxredge train --variant finetune` (phase 1 = the head on the cached logits; phase 2 = the last K
depthwise-separable blocks unfrozen, BN in inference mode, augmented images, low learning rate), puts it next
to the two_conv metrics of --compare (a run directory trained with the same settings) and writes
benchmarks/results/train/finetune.json and .md with the machine info.

    flock /tmp/cxredge-heavy.lock .venv/bin/python benchmarks/train/finetune.py --data DIR --out runs/finetune \
        --compare runs/full
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console

from cxredge.io import write_json, write_text
from cxredge.train.run import train_run
from cxredge.train.settings import TrainSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from common import results_dir  # noqa: E402

RESULTS = results_dir(__file__)
KEYS = ("accuracy", "macro_f1", "macro_precision", "macro_recall", "params_trainable", "params_total",
        "train_seconds", "epochs_run")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--out", default="runs/finetune")
    p.add_argument("--unfreeze-blocks", type=int, default=2)
    p.add_argument("--finetune-epochs", type=int, default=8)
    p.add_argument("--finetune-lr", type=float, default=1e-5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compare", default="runs/full", help="run directory whose two_conv/metrics.json to show")
    args = p.parse_args()
    settings = TrainSettings(variants=("finetune",), unfreeze_blocks=args.unfreeze_blocks,
                             finetune_epochs=args.finetune_epochs, finetune_lr=args.finetune_lr, seed=args.seed,
                             bn_mode="inference", finetune_head="mlp", finetune_augment="standard",
                             weight_decay=0.0, warmup_epochs=0.0)
    t0 = time.perf_counter()
    results = train_run(args.data, args.out, settings, Console())
    wall = time.perf_counter() - t0
    run = json.loads((Path(args.out) / "run.json").read_text())
    hist = json.loads((Path(args.out) / "finetune" / "history.json").read_text())
    phase1 = hist["phase1_epochs"]
    compare = Path(args.compare) / "two_conv" / "metrics.json"
    if compare.is_file():
        results.insert(0, {**json.loads(compare.read_text()), "variant": f"two_conv ({args.compare})"})
    out = {"benchmark": "finetune", "created": run["created"], "data": run["data"]["path"],
           "devices": run["devices"], "versions": run["versions"], "settings": settings.to_dict(),
           "wall_seconds": round(wall, 1), "feature_cache_seconds": run["feature_cache_seconds"],
           "results": {m["variant"]: {k: m[k] for k in KEYS} for m in results},
           "finetune_phases": {"phase1_epochs": phase1, "phase2_epochs": len(hist["loss"]) - phase1,
                               "phase1_seconds": round(sum(hist["epoch_seconds"][:phase1]), 1),
                               "phase2_seconds": round(sum(hist["epoch_seconds"][phase1:]), 1),
                               "phase2_val_accuracy": [round(v, 4) for v in hist["val_accuracy"][phase1:]]}}
    write_json(RESULTS / "finetune.json", out)
    write_text(RESULTS / "finetune.md", markdown(out))
    print(markdown(out))


def markdown(r: dict) -> str:
    s, ph = r["settings"], r["finetune_phases"]
    lines = [f"# finetune vs the cached two_conv head ({r['created']})", "",
             f"Data `{r['data']}`; devices {r['devices']['used']} ({r['devices']['strategy']}); "
             f"TensorFlow {r['versions']['tensorflow']}. Test split; selection on val only (early stopping).", "",
             f"finetune: phase 1 = cached two_conv head ({ph['phase1_epochs']} epochs, {ph['phase1_seconds']} s); "
             f"phase 2 = last {s['unfreeze_blocks']} blocks unfrozen, BN in inference mode, augmented images, "
             f"Adam lr {s['finetune_lr']}, {ph['phase2_epochs']} epochs, {ph['phase2_seconds']} s "
             f"(val accuracy per epoch {ph['phase2_val_accuracy']}).", "",
             "| variant | accuracy | macro-F1 | macro precision | macro recall | trainable / total params | "
             "epochs | train s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for v, m in r["results"].items():
        lines.append(f"| {v} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} | {m['macro_precision']:.3f} | "
                     f"{m['macro_recall']:.3f} | {m['params_trainable']:,} / {m['params_total']:,} | "
                     f"{m['epochs_run']} | {m['train_seconds']} |")
    lines += ["", f"Whole command: {r['wall_seconds']} s (feature cache {r['feature_cache_seconds']} s).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
