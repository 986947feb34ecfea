"""Is an unequal logit weight better than the mean? One weight for all seeds, chosen on val.

For every per-seed ensemble folder (`<runs>/s<k>` with two members, e.g. from finetune_ensemble.py),
the members' logits (`cxredge.train.ensemble.logits_model`: the last Dense without the softmax) are
computed once on val and test; then for each weight w of the second member (w, 1 - w for the first:
`cxredge ensemble --weights 1-w,w`) the argmax of the weighted logit sum is scored. The weight is
chosen **once, on the mean val accuracy over the seeds** (ties: val macro-F1, then the weight closest
to 0.5, i.e. the equal mean); test is reported for that weight and for the equal mean. Nothing
retrains; rebuild the chosen model with `cxredge ensemble --weights` to quantize it.

    .venv/bin/python benchmarks/train/ensemble_weights.py --data DIR --runs runs/ens_bninf_noaug \\
        --name ensemble_weights_bninf_noaug        # results/<name>.json and .md
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common.py
from common import cpu_info, results_dir  # noqa: E402

RESULTS = results_dir(__file__)
GRID = [round(0.1 * i, 1) for i in range(11)]  # weight of the second member


def member_logits(folder: Path, data: str) -> dict:
    from cxredge.edge.data.dataset import load_split, scan
    from cxredge.keras import keras
    from cxredge.train.ensemble import logits_model
    doc = json.loads((folder / "ensemble" / "metrics.json").read_text())
    files = [m["model"] for m in doc["ensemble"]["members"]]
    if len(files) != 2:
        sys.exit(f"{folder}: {len(files)} members; this benchmark weighs exactly two")
    ds = scan(data)
    splits = {s: load_split(ds, s) for s in ("val", "test")}
    models = [logits_model(keras.models.load_model(f, compile=False), f"m{i}") for i, f in enumerate(files)]
    out = {"labels": [m["label"] for m in doc["ensemble"]["members"]], "classes": list(ds.classes)}
    for split, data_split in splits.items():
        out[f"{split}_y"] = np.asarray(data_split.y)
        out[split] = [m.predict(data_split.x, batch_size=64, verbose=0) for m in models]
    return out


def scores(lg: dict, split: str, w: float) -> dict:
    """The project's own scoring of the weighted logits (argmax: the softmax does not change it)."""
    from cxredge.train.ensemble_run import scores as ensemble_scores
    return ensemble_scores(lg[f"{split}_y"], (1 - w) * lg[split][0] + w * lg[split][1], lg["classes"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--runs", required=True, help="folder of per-seed ensemble runs s0, s1, ...")
    p.add_argument("--name", default="ensemble_weights")
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args()
    seeds = {}
    for folder in sorted(Path(args.runs).glob("s[0-9]*")):
        if not (folder / "ensemble" / "metrics.json").is_file():
            continue
        lg = member_logits(folder, args.data)
        seeds[folder.name] = {"members": lg["labels"], "grid": {
            str(w): {s: scores(lg, s, w) for s in ("val", "test")} for w in GRID}}
    if not seeds:
        sys.exit(f"--runs {args.runs}: no s<k>/ensemble/metrics.json")

    def mean(w: float, split: str, key: str) -> float:
        return statistics.fmean(s["grid"][str(w)][split][key] for s in seeds.values())

    chosen = max(GRID, key=lambda w: (round(mean(w, "val", "accuracy"), 6), round(mean(w, "val", "macro_f1"), 6),
                                      -abs(w - 0.5)))
    doc = {"benchmark": "ensemble_weights", "cpu": cpu_info(), "runs": args.runs, "grid": GRID, "seeds": seeds,
           "chosen_weight": chosen, "summary": {str(w): {f"{s}_{k}_mean": round(mean(w, s, k), 4)
                                                         for s in ("val", "test") for k in ("accuracy", "macro_f1")}
                                                for w in GRID}}
    results = Path(args.results)
    (results / f"{args.name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    (results / f"{args.name}.md").write_text(markdown(doc))
    print(markdown(doc))


def markdown(doc: dict) -> str:
    first = next(iter(doc["seeds"].values()))["members"]
    lines = [f"# Logit weight of a two-member ensemble, chosen on val (`{doc['runs']}`)", "",
             f"`benchmarks/train/ensemble_weights.py`; CPU {doc['cpu'].get('model')}. w = weight of **{first[1]}**, "
             f"1 - w of **{first[0]}** (per seed, the members of that seed); w = 0.5 is the equal mean "
             "`cxredge ensemble` builds by default. Accuracy from the argmax of the weighted logits on the "
             "same 840 val / 840 test images.", "",
             "| w | val acc (mean) | val F1 (mean) | test acc (mean) | test F1 (mean) | test acc per seed |",
             "|---:|---:|---:|---:|---:|---|"]
    for w in doc["grid"]:
        s = doc["summary"][str(w)]
        per = " / ".join(f"{v['grid'][str(w)]['test']['accuracy']:.3f}" for v in doc["seeds"].values())
        mark = "**" if w == doc["chosen_weight"] else ""
        lines.append(f"| {mark}{w}{mark} | {s['val_accuracy_mean']:.4f} | {s['val_macro_f1_mean']:.4f} | "
                     f"{s['test_accuracy_mean']:.4f} | {s['test_macro_f1_mean']:.4f} | {per} |")
    lines += ["", f"Chosen on val: **w = {doc['chosen_weight']}** (bold row). Seeds: {', '.join(doc['seeds'])}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
