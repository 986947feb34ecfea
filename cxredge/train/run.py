"""`cxredge train` end to end: data -> feature cache -> one fit per variant -> artifacts + run.json."""
from __future__ import annotations

import datetime as dt
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console

from cxredge import __version__
from cxredge.convert import calibration
from cxredge.edge import validation
from cxredge.edge.clinical import Resampler
from cxredge.edge.dataset import scan
from cxredge.edge.metrics import classification_metrics
from cxredge.edge.table import DataOptions
from cxredge.errors import CxrError
from cxredge.formats import RUN_FORMAT, RUN_JSON
from cxredge.io import write_json
from cxredge.keras import keras, tf
from cxredge.train import fit as fitting
from cxredge.train import int8_views
from cxredge.train.artifacts import write_variant
from cxredge.train.audit_step import pre_training_audit
from cxredge.train.augment import image_dataset, view_transform
from cxredge.train.cache import compute_features, cut_layer_name, feature_extractor, predict, tail_model
from cxredge.train.data import TrainData, load_data, progress_bar
from cxredge.train.finetune import fit_phase2, pair_accuracy, pair_indices
from cxredge.train.paired import PairedTail
from cxredge.train.settings import TrainSettings
from cxredge.train.variants import build_model, count_params, resolve_weights, set_trainable

VIEW_NAMES = {0: "", 1: " (mirrored)"}
CHECK_IMAGES = 8  # test images run through the full model to confirm it equals the cached tail


@dataclass
class Features:
    """Cached cuts by layer name: train (one array per view), val, test; with --int8-aware the same
    cuts as the int8 backbone computes them (int8_*), and the calibration manifest it used."""
    train: dict[str, list[np.ndarray]] = field(default_factory=dict)
    val: dict[str, np.ndarray] = field(default_factory=dict)
    test: dict[str, np.ndarray] = field(default_factory=dict)
    int8_train: dict[str, list[np.ndarray]] = field(default_factory=dict)
    int8_val: dict[str, np.ndarray] = field(default_factory=dict)
    int8_test: dict[str, np.ndarray] = field(default_factory=dict)
    int8_calibration: dict | None = None
    seconds: float = 0.0


def train_run(data_dir: str | Path, out: str | Path, settings: TrainSettings, console: Console) -> list[dict]:
    """Train every requested variant; return their metrics (also written under out/)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CxrError(f"--out {out}: exists and is not a folder")
    fitting.set_determinism(settings.seed)
    deadline = time.time() + 60 * settings.max_minutes if settings.max_minutes else None
    weights = resolve_weights(settings.weights, settings.alpha)
    options = DataOptions.from_dict(settings.data_options)
    if settings.pair_weight != 1.0 and not pair_indices(classes := scan(data_dir, options=options).classes):
        raise CxrError(f"--pair-weight {settings.pair_weight}: the classes of {data_dir} "
                       f"({', '.join(classes)}) have no Bacterial/Viral pneumonia pair")
    data = load_data(data_dir, seed=settings.seed, skip_bad=settings.skip_bad, console=console, options=options)
    audit = pre_training_audit(data, out, settings.seed, console) if settings.audit else None
    strategy = fitting.make_strategy(settings.strategy)
    cuts, feats = _cache(data, settings, weights, console)
    results = []
    for variant in settings.variants:
        results.append(_train_variant(variant, data, feats, cuts, settings, weights, strategy, out, console,
                                      deadline))
    _write_run_json(out, data, settings, results, feats, strategy, audit)
    return results


def _cache(data: TrainData, settings: TrainSettings, weights, console) -> tuple[dict[str, str], Features]:
    """Which layer each cached variant trains on, and one forward pass per image (and per mirrored
    train image) that yields every variant's cut. finetune's phase 1 trains its head on fc's cut (the
    logits); test features are cached only for the variants evaluated on them (not finetune)."""
    t0 = time.perf_counter()
    ref = build_model("fc", len(data.classes), settings.alpha, weights)
    cuts = {}
    for v in settings.variants:
        if v == "finetune" or not settings.augment:
            set_trainable(ref, "fc" if v == "finetune" else v)
            cuts[v] = cut_layer_name(ref)
    feats = Features()
    if not cuts:
        return cuts, feats
    layer_names = list(dict.fromkeys(cuts.values()))
    extractor = feature_extractor(ref, layer_names)
    int8 = _int8_cuts(extractor, data, feats, console) if settings.int8_aware else None
    jobs = [("train", view) for view in range(settings.cache_views)] + [("val", 0)]
    jobs += [("test", 0)] if set(cuts) - {"finetune"} else []
    with progress_bar(console) as bar:
        for split, view in jobs:
            images = data.splits[split].x
            label = f"{split}{VIEW_NAMES.get(view, f' (augmented view {view})')}"
            task = bar.add_task(f"cache {label}", total=len(images), info="")
            pixels: list[np.ndarray] = []
            arrays = compute_features(extractor, images, 32, view_transform(view, settings.seed, settings.pixel_noise),
                                      lambda n, t=task: bar.advance(t, n),
                                      (lambda x: pixels.append(int8_views.as_pixels(x))) if int8 else None)
            quantized = [None] * len(layer_names)
            if int8:
                task = bar.add_task(f"int8 cuts {label}", total=len(images), info="")
                quantized = int8(np.concatenate(pixels), lambda n, t=task: bar.advance(t, n))
            for name, arr, q in zip(layer_names, arrays, quantized):
                if split == "train":
                    feats.train.setdefault(name, []).append(arr)
                    if q is not None:
                        feats.int8_train.setdefault(name, []).append(q)
                else:
                    getattr(feats, split)[name] = arr
                    if q is not None:
                        getattr(feats, f"int8_{split}")[name] = q
    feats.seconds = time.perf_counter() - t0
    console.print(f"feature cache: {sum(len(data.splits[s].x) for s, _ in jobs)} forward passes "
                  f"in {feats.seconds:.1f} s ({', '.join(layer_names)})")
    return cuts, feats


def _int8_cuts(extractor, data: TrainData, feats: Features, console) -> int8_views.Int8Cuts:
    """The int8 extractor, calibrated on the images `cxredge quantize` calibrates with by default."""
    manifest = int8_views.calibration_manifest(data.dataset, data.dataset.fingerprint())
    images = calibration.load_images(manifest, data.dataset.root, "--int8-aware calibration")
    t0 = time.perf_counter()
    with console.status(f"int8-aware: converting the frozen backbone to int8 ({manifest.size} calibration images)"):
        model = int8_views.int8_extractor(extractor, images)
    feats.int8_calibration = {"size": manifest.size, "seed": manifest.seed, "sha256": manifest.sha256(),
                              "convert_seconds": round(time.perf_counter() - t0, 2)}
    return int8_views.Int8Cuts(model, extractor)


def _train_variant(variant, data, feats, cuts, settings, weights, strategy, out, console, deadline=None) -> dict:
    k = len(data.classes)
    keras.backend.clear_session()
    fitting.set_determinism(settings.seed)
    t0 = time.perf_counter()
    with strategy.scope():
        model = build_model(variant, k, settings.alpha, weights, settings.unfreeze_blocks, settings.dropout,
                            settings.finetune_head if variant == "finetune" else "mlp")
        total, trainable = count_params(model)
        if variant == "finetune":
            set_trainable(model, "fc")  # phase 1: the head alone, on the cached logits
    cw = fitting.class_weights(data.splits["train"].y, k, settings.class_weight)
    with progress_bar(console) as bar:
        advance = _advancer(bar, variant, settings.epochs)
        if variant in cuts:
            history, tail = _fit_cached(model, cuts[variant], data, feats, settings, cw, strategy, advance, deadline)
        else:
            history, tail = _fit_full(model, data, settings, cw, strategy, advance, settings.epochs, settings.lr,
                                      deadline)
        if variant == "finetune":
            set_trainable(model, "finetune", settings.unfreeze_blocks)
            phase2 = fit_phase2(model, data, settings, cw, strategy, lambda label, n: _batch_bar(bar, label, n),
                                deadline)
            history, tail = _join_phases(history, phase2), None
    seconds = time.perf_counter() - t0
    metrics = _evaluate(model, tail, variant, cuts, data, feats, settings)
    metrics.update(params_total=total, params_trainable=trainable, train_seconds=round(seconds, 2),
                   epochs_run=len(history["loss"]), best_epoch=history["best_epoch"])
    if "best_val" in history:
        metrics["val"] = history["best_val"]
    write_variant(out, variant, model, history, metrics)
    console.print(f"[green]{variant}[/]: test accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f} "
                  f"({metrics['epochs_run']} epochs, {seconds:.1f} s) -> {out / variant}")
    return metrics


def _advancer(bar, label: str, epochs: int):
    """One bar per fit: advances per epoch; on an early stop the bar's total shrinks to the epochs run."""
    task = bar.add_task(f"train {label}", total=epochs, info="")

    def advance(info: str, done: bool = False) -> None:
        if done:
            completed = next(t.completed for t in bar.tasks if t.id == task)
            bar.update(task, total=completed, info=info + " (early stop)")
        else:
            bar.update(task, advance=1, info=info)
    return advance


def _batch_bar(bar, label: str, total: int):
    """A bar that advances per batch (ETA from the batch rate); info is set at each epoch's end."""
    task = bar.add_task(f"train {label}", total=total, info="")

    def update(n: int, info: str | None, done: bool = False) -> None:
        if done:
            completed = next(t.completed for t in bar.tasks if t.id == task)
            bar.update(task, total=completed, info=info)
        else:
            bar.update(task, advance=n, **({"info": info} if info is not None else {}))
    return update


def _fit_cached(model, cut, data, feats, settings, cw, strategy, advance, deadline=None):
    k = len(data.classes)
    pairs = feats.int8_train.get(cut)  # --int8-aware: each view's int8 cut, trained side by side
    with strategy.scope():
        tail = tail_model(model, cut)
        trainer = PairedTail(tail, settings.int8_consistency, settings.label_smoothing) if pairs else tail
        fitting.compile_model(trainer, settings.lr, settings.label_smoothing)
    train = fitting.CachedBatches(feats.train[cut], data.splits["train"].y, k, settings.batch_size, settings.seed, cw,
                                  pairs)
    val = (feats.val[cut], np.eye(k, dtype=np.float32)[data.splits["val"].y])
    history, _ = fitting.fit(trainer, train, val, settings, settings.epochs, advance, deadline)
    history["mode"] = "cached, int8-aware" if pairs else "cached"
    return history, tail


def _fit_full(model, data, settings, cw, strategy, advance, epochs, lr, deadline=None):
    """The whole network on (augmented) images; BN layers run in inference mode (tail from the input)."""
    k = len(data.classes)
    with strategy.scope():
        trainer = tail_model(model, model.layers[0].name)
        fitting.compile_model(trainer, lr, settings.label_smoothing)
    train = image_dataset(data.splits["train"].x, data.splits["train"].y, k, settings.batch_size, settings.seed,
                          augment=True, weights=cw, noise=settings.pixel_noise)
    val = image_dataset(data.splits["val"].x, data.splits["val"].y, k, settings.batch_size, settings.seed,
                        augment=False)
    history, _ = fitting.fit(trainer, train, val, settings, epochs, advance, deadline)
    history["mode"] = "full-augmented"
    return history, None


def _join_phases(p1: dict, p2: dict) -> dict:
    joined = {key: p1[key] + p2[key] for key in p1 if isinstance(p1[key], list) and key in p2}
    n1, best = len(p1["loss"]), p2["best_epoch"]
    joined.update(phase1_epochs=n1, mode=f"cached head + {p2['mode']}", best_epoch=n1 + best,
                  stop_reason=p2["stop_reason"], ema=p2.get("ema", 0.0), phase2_val_macro_f1=p2.get("val_macro_f1", []),
                  phase2_val_pair_accuracy=p2.get("val_pair_accuracy", []))
    if best:
        joined["best_val"] = {key: p2[f"val_{key}"][best - 1] for key in ("loss", "accuracy", "macro_f1", "pair_accuracy")
                              if f"val_{key}" in p2}
    return joined


def _evaluate(model, tail, variant, cuts, data, feats, settings) -> dict:
    """Test metrics from real predictions; confirm once that the full model equals the cached tail."""
    test = data.splits["test"]
    check = None
    if tail is not None:
        probs = predict(tail, feats.test[cuts[variant]])
        full = predict(model, test.x[:CHECK_IMAGES])
        check = float(np.abs(full - probs[:CHECK_IMAGES]).max())
    else:
        probs = predict(model, test.x, batch_size=32)
    metrics = classification_metrics(test.y, probs.argmax(axis=1), data.classes)
    metrics["pair_accuracy"] = pair_accuracy(test.y, probs.argmax(axis=1), data.classes)
    block = validation.clinical_block(test.y, probs, list(data.classes), Resampler(len(test.y)))
    validation.merge_into(metrics, block)  # the clinical block (edge/validation.py), as bench writes it
    metrics.update(variant=variant, split="test", full_vs_cached_max_abs_diff=check)
    if tail is not None and cuts[variant] in feats.int8_test:
        cut = cuts[variant]
        float_pred = {"val": predict(tail, feats.val[cut]).argmax(1), "test": probs.argmax(1)}
        metrics["int8_backbone_agreement"] = {
            split: int8_views.forecast_agreement(tail, float_pred[split], getattr(feats, f"int8_{split}")[cut])
            for split in ("val", "test")}
    return metrics


def _write_run_json(out, data: TrainData, settings, results, feats, strategy, audit: dict | None) -> None:
    run = {
        "format": RUN_FORMAT,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "classes": list(data.classes), "alpha": settings.alpha, "weights": settings.weights, "image_size": 224,
        "seed": settings.seed, "variants": list(settings.variants),
        "data": {**data.dataset.describe(), "path": str(Path(data.dataset.root).resolve()),
                 "sha256": data.dataset.fingerprint()},
        "settings": settings.to_dict(),
        "versions": {"cxredge": __version__, "tensorflow": tf.__version__, "tf_keras": keras.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "devices": {**fitting.devices(), "strategy": type(strategy).__name__,
                    "replicas": strategy.num_replicas_in_sync},
        "leakage": data.leaks, "skipped_images": len(data.skipped), "skipped": data.skipped,
        "feature_cache_seconds": round(feats.seconds, 2),
        "int8_aware": feats.int8_calibration,
        "audit": audit,
        "results": {m["variant"]: {key: m[key] for key in ("accuracy", "macro_f1", "params_trainable", "train_seconds")}
                    for m in results},
    }
    write_json(out / RUN_JSON, run)
