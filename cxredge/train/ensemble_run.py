"""`cxredge ensemble` end to end: members -> val/test predictions -> <run>/ensemble/ + run.json.

The members' logits are computed once per split; the ensemble's probabilities are their weighted
mean through a softmax (numpy), and the built Keras model is checked against that on a few test
images before anything is written. metrics.json has the same keys as a trained variant's (the
clinical block included), plus `ensemble` (the members, their hashes and weights) and `members`
(each member's own val / test accuracy, macro-F1 and pair accuracy on the same images).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console

from cxredge.edge.data.dataset import Split, scan_recorded
from cxredge.edge.evaluate import validation
from cxredge.edge.evaluate.clinical import Resampler
from cxredge.edge.evaluate.metrics import classification_metrics
from cxredge.errors import CxrError
from cxredge.formats import METRICS_JSON, RUN_JSON
from cxredge.io import read_json, write_json
from cxredge.plots import plot_confusion
from cxredge.train import ensemble as E
from cxredge.train.artifacts import save_model
from cxredge.train.cache import predict, predict_many
from cxredge.train.data import progress_bar
from cxredge.train.finetune import pair_accuracy
from cxredge.vocab import EVAL_SPLITS

CHECK_IMAGES = 8


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def scores(y: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    pred = probs.argmax(1)
    m = classification_metrics(y, pred, classes)
    return {"accuracy": float(m["accuracy"]), "macro_f1": float(m["macro_f1"]),
            "pair_accuracy": pair_accuracy(y, pred, classes)}


def _advancing(batches, advance):
    for b in batches:
        yield b
        advance(len(b))


def ensemble_run(run_dir: Path, specs: list[str], weights: list[float] | None, console: Console) -> dict:
    run_path = run_dir / RUN_JSON
    if not run_path.is_file():
        raise CxrError(f"--run {run_dir}: no run.json (train first: cxredge train --out {run_dir})")
    run = read_json(run_path)
    classes = list(run["classes"])
    members = E.load_members(run_dir, specs, classes)
    model = E.build(members, weights)
    ds = scan_recorded(run["data"])
    if list(ds.classes) != classes:
        raise CxrError(f"{run_path}: classes {classes} differ from the dataset's {list(ds.classes)}")
    rec = E.record(members, weights)
    w = np.array([m["weight"] for m in rec["members"]])
    logits: dict[str, list[np.ndarray]] = {}
    splits = {s: Split(ds.paths(s), ds.labels(s)) for s in ("val", "test")}  # streamed: decoded in batches
    subs = [E.logits_model(m.model, E.member_name(i, m.label)) for i, m in enumerate(members)]
    with progress_bar(console) as bar:
        for split in EVAL_SPLITS:
            task = bar.add_task(f"{len(members)} members on {split}", total=len(splits[split].paths), info="")
            batches = _advancing(splits[split].stream(32), lambda n, t=task: bar.advance(t, n))
            logits[split] = predict_many(subs, batches)
    probs = {s: softmax(np.tensordot(w, np.stack(z), axes=1)) for s, z in logits.items()}
    test = splits["test"]
    check = float(np.abs(predict(model, test.stream().head(CHECK_IMAGES)) - probs["test"][:CHECK_IMAGES]).max())
    if check > 1e-4:
        raise CxrError(f"ensemble: the built model differs from the mean of its members' logits by {check:.2e}")
    metrics = classification_metrics(test.y, probs["test"].argmax(1), classes)
    metrics["pair_accuracy"] = pair_accuracy(test.y, probs["test"].argmax(1), classes)
    validation.merge_into(metrics, validation.clinical_block(test.y, probs["test"], classes, Resampler(len(test.y))))
    metrics.update(variant=E.NAME, split="test", full_vs_cached_max_abs_diff=check,
                   val=scores(splits["val"].y, probs["val"], classes), ensemble=rec,
                   members={m.label: {s: scores(splits[s].y, softmax(logits[s][i]), classes) for s in EVAL_SPLITS}
                            for i, m in enumerate(members)})
    folder = run_dir / E.NAME
    save_model(model, folder / "model.keras")
    write_json(folder / METRICS_JSON, metrics)
    plot_confusion(metrics["confusion_matrix"], classes, folder / "confusion.png",
                   title=f"ensemble: test accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}")
    run["variants"] = list(dict.fromkeys(list(run.get("variants") or []) + [E.NAME]))
    run.setdefault("results", {})[E.NAME] = {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
                                            "members": [m.label for m in members]}
    write_json(run_path, run)
    return metrics
