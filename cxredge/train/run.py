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
from cxredge.edge.data import stream
from cxredge.edge.data.dataset import scan
from cxredge.edge.data.table import DataOptions
from cxredge.edge.evaluate import validation
from cxredge.edge.evaluate.clinical import Resampler
from cxredge.edge.evaluate.metrics import classification_metrics
from cxredge.errors import CxrError
from cxredge.formats import RUN_FORMAT, RUN_JSON
from cxredge.io import write_json
from cxredge.keras import keras, tf
from cxredge.train import cache, int8_views
from cxredge.train import fit as fitting
from cxredge.train.artifacts import write_variant
from cxredge.train.audit_step import AuditRows, pre_training_audit
from cxredge.train.augment import path_dataset, view_transform
from cxredge.train.cache import cut_layer_name, feature_extractor, predict, tail_model
from cxredge.train.data import TrainData, load_data, progress_bar
from cxredge.train.finetune import fit_phase2, pair_accuracy, pair_indices
from cxredge.train.paired import PairedTail
from cxredge.train.settings import TrainSettings
from cxredge.train.store import FeatureStore, file_sha256, float16_keeps
from cxredge.train.variants import build_model, count_params, resolve_weights, set_trainable

VIEW_NAMES = {0: "", 1: " (mirrored)"}
CHECK_IMAGES = 8  # test images run through the full model to confirm it equals the cached tail


CHUNK_BATCHES = 8  # the cache pass makes its rows durable (fsync + marker) every this many batches


@dataclass
class Features:
    """Cached cuts by layer name, memory-mapped from the on-disk cache (train/store.py): train (one
    array per view), val, test; with --int8-aware the same cuts as the int8 backbone computes them
    (int8_*), and the calibration manifest it used."""
    train: dict[str, list] = field(default_factory=dict)
    val: dict[str, object] = field(default_factory=dict)
    test: dict[str, object] = field(default_factory=dict)
    int8_train: dict[str, list] = field(default_factory=dict)
    int8_val: dict[str, object] = field(default_factory=dict)
    int8_test: dict[str, object] = field(default_factory=dict)
    int8_calibration: dict | None = None
    seconds: float = 0.0
    forward_passes: int = 0  # images the backbone ran on in this run (0 when the cache had every cut)
    images_per_second: float | None = None
    cache_dir: str | None = None
    cache_bytes: int = 0
    dtypes: dict[str, str] = field(default_factory=dict)


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
    ds = scan(data_dir, seed=settings.seed, options=options)
    rows = AuditRows(ds) if settings.audit else None
    data = load_data(data_dir, seed=settings.seed, skip_bad=settings.skip_bad, console=console, on_image=rows,
                     ds=ds)
    audit = pre_training_audit(data, rows, out, settings.seed, console) if rows else None
    strategy = fitting.make_strategy(settings.strategy)
    cuts, feats = _cache(data, settings, weights, console, out)
    results = []
    for variant in settings.variants:
        results.append(_train_variant(variant, data, feats, cuts, settings, weights, strategy, out, console,
                                      deadline))
    _write_run_json(out, data, settings, results, feats, strategy, audit)
    return results


def view_tag(view: int, seed: int, noise: float) -> str:
    """A cached view's name in the cache: what decides its pixels (the mirror is seed-free without noise)."""
    if view == 0:
        return "v0"
    if view == 1:
        return "mirror" + (f"-n{noise:g}-s{seed}" if noise > 0 else "")
    return f"aug{view}-n{noise:g}-s{seed}"


def cache_store(data: TrainData, settings: TrainSettings, weights, out: Path) -> FeatureStore:
    """The store keyed by what decides the features: weights, alpha, data, dtype, versions."""
    if weights and Path(weights).is_file():
        wkey = {"weights_sha256": file_sha256(weights)}
    else:  # "imagenet" (Keras' own file) or None (a seeded random init)
        wkey = {"weights": str(weights), **({"init_seed": settings.seed} if weights is None else {})}
    key = {**wkey, "alpha": settings.alpha, "dataset_sha256": data.fingerprint(),
           "image_size": 224, "tensorflow": tf.__version__, "tf_keras": keras.__version__,
           "images": {s: len(data.splits[s].paths) for s in data.splits}}
    return FeatureStore(Path(settings.cache_dir) if settings.cache_dir else out / "feature_cache", key)


def _cache(data: TrainData, settings: TrainSettings, weights, console, out: Path) -> tuple[dict[str, str], Features]:
    """Which layer each cached variant trains on, and the on-disk cache of every cut they need: one
    forward pass per image (and per mirrored train image) that is not on disk yet, streamed in batches.
    finetune's phase 1 trains its head on fc's cut (the logits); test features are cached only for the
    variants evaluated on them (not finetune)."""
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
    shapes = [tuple(int(d) for d in o.shape[1:]) for o in extractor.outputs]
    store = cache_store(data, settings, weights, out)
    dtypes = _dtypes(store, settings, extractor, layer_names, data)
    int8 = _Int8Lazy(extractor, data, feats, console) if settings.int8_aware else None
    jobs = [("train", view) for view in range(settings.cache_views)] + [("val", 0)]
    jobs += [("test", 0)] if set(cuts) - {"finetune"} else []
    computed, seconds = 0, 0.0
    with progress_bar(console, rate=True) as bar:
        for split in dict.fromkeys(split for split, _ in jobs):
            paths = data.splits[split].paths
            n = len(paths)
            views = []
            for view in [v for s_, v in jobs if s_ == split]:
                tag = view_tag(view, settings.seed, settings.pixel_noise)
                names = [f"{split}.{tag}.{layer}.{dtypes[layer]}" for layer in layer_names]
                if int8:
                    names += [f"{split}.{tag}.{layer}.int8-{int8.tag}.{dtypes[layer]}" for layer in layer_names]
                all_shapes = [(n, *s) for s in shapes] * (2 if int8 else 1)
                kinds = [dtypes[lay] for lay in layer_names] * (2 if int8 else 1)
                start = min(store.done(name, shape) for name, shape in zip(names, all_shapes))
                views.append(_View(view, names, all_shapes, kinds, start))
            todo = sorted({v.start for v in views if v.start < n})
            for start in todo:  # the views that stopped at the same row share one decode of each batch
                group = [v for v in views if v.start == start]
                label = f"cache {split}" + (f" ({len(group)} views)" if len(group) > 1 else
                                            VIEW_NAMES.get(group[0].view, f" (augmented view {group[0].view})"))
                t1 = time.perf_counter()
                _fill(store, group, extractor, paths, start, int8, bar, label, settings)
                seconds += time.perf_counter() - t1
                computed += (n - start) * len(group)
            for v in views:
                arrays = [store.rows(name) for name in v.names]
                for i, layer in enumerate(layer_names):
                    q = arrays[len(layer_names) + i] if int8 else None
                    if split == "train":
                        feats.train.setdefault(layer, []).append(arrays[i])
                        if q is not None:
                            feats.int8_train.setdefault(layer, []).append(q)
                    else:
                        getattr(feats, split)[layer] = arrays[i]
                        if q is not None:
                            getattr(feats, f"int8_{split}")[layer] = q
    feats.seconds = time.perf_counter() - t0
    feats.forward_passes = computed
    feats.images_per_second = round(computed / seconds, 2) if computed and seconds else None
    feats.cache_dir, feats.cache_bytes, feats.dtypes = str(store.dir), store.disk_bytes(), dtypes
    total = sum(len(data.splits[s].paths) for s, _ in jobs)
    reused = f", {total - computed} read from the cache" if computed < total else ""
    console.print(f"feature cache: {computed} forward passes{reused} in {feats.seconds:.1f} s "
                  f"({', '.join(f'{lay} {dtypes[lay]}' for lay in layer_names)}; {feats.cache_bytes / 1e6:.0f} MB) "
                  f"-> {store.dir}", highlight=False)
    return cuts, feats


@dataclass
class _View:
    view: int
    names: list[str]
    shapes: list[tuple[int, ...]]
    dtypes: list[str]
    start: int


def _fill(store, views: list[_View], extractor, paths, start, int8, bar, label, settings) -> None:
    """Stream the images from `start` through the backbone into the store, every view of `views` from
    one decode of each batch; durable every CHUNK_BATCHES batches."""
    bs = 32
    start -= start % bs  # a view's random transform is seeded per batch of 32 rows
    try:
        writers = [[store.writer(name, shape, dt) for name, shape, dt in zip(v.names, v.shapes, v.dtypes)]
                   for v in views]
    except OSError as exc:
        raise CxrError(f"feature cache {store.dir}: {exc.strerror or exc}") from None
    n = len(paths)
    task = bar.add_task(label, total=n * len(views), completed=start * len(views),
                        info="(resumed)" if start else "", rate="")
    transforms = [view_transform(v.view, settings.seed, settings.pixel_noise) for v in views]
    fn = cache.compiled(extractor)
    t0, done = time.perf_counter(), 0
    try:
        for i, batch in enumerate(stream.decode_batches(paths, bs, start)):
            row = start + i * bs
            for transform, ws in zip(transforms, writers):
                x = transform(batch, row) if transform else batch.astype(np.float32)
                outs = cache.forward(fn, x)
                if int8:
                    outs = outs + int8.cuts(int8_views.as_pixels(x))
                for w, arr in zip(ws, outs):
                    w.write(row, arr)
                done += len(x)
            if (i + 1) % CHUNK_BATCHES == 0:
                for w in (w for ws in writers for w in ws):
                    w.commit()
            bar.update(task, advance=len(batch) * len(views), rate=f"{done / (time.perf_counter() - t0):.1f} img/s")
        for w in (w for ws in writers for w in ws):
            w.commit()
    except OSError as exc:  # a full disk, a read-only or vanished cache folder: rerun resumes from the marker
        raise CxrError(f"feature cache {store.dir}: {exc.strerror or exc} while writing; free space or pass "
                       f"another --cache-dir, then rerun (it resumes)") from None
    finally:
        for w in (w for ws in writers for w in ws):
            w.close()


def _dtypes(store: FeatureStore, settings: TrainSettings, extractor, layer_names: list[str], data) -> dict[str, str]:
    """Each cut's storage dtype. auto: float16 when a first batch of train images shows it keeps the cut
    (store.float16_keeps), else float32; decided once per cache and remembered in it."""
    if settings.cache_dtype != "auto":
        return {layer: settings.cache_dtype for layer in layer_names}
    decided = store.meta("dtypes")
    if any(layer not in decided for layer in layer_names):
        first = stream.decode_paths(data.splits["train"].paths[:32])
        for layer, arr in zip(layer_names, cache.compute_features(extractor, first)):
            decided.setdefault(layer, "float16" if float16_keeps(arr) else "float32")
        store.set_meta("dtypes", decided)
    return {layer: decided[layer] for layer in layer_names}


class _Int8Lazy:
    """The int8 extractor, converted only when some int8 cut is not on disk yet."""

    def __init__(self, extractor, data: TrainData, feats: Features, console):
        self.extractor, self.data, self.feats, self.console = extractor, data, feats, console
        self.manifest = int8_views.calibration_manifest(data.dataset, data.fingerprint())
        self.tag = self.manifest.sha256()[:12]
        self.feats.int8_calibration = {"size": self.manifest.size, "seed": self.manifest.seed,
                                       "sha256": self.manifest.sha256(), "convert_seconds": 0.0}
        self._model = None

    def cuts(self, pixels: np.ndarray) -> list[np.ndarray]:
        if self._model is None:
            self._model = _int8_cuts(self.extractor, self.data, self.manifest, self.feats, self.console)
        return self._model(pixels)


def _int8_cuts(extractor, data: TrainData, manifest, feats: Features, console) -> int8_views.Int8Cuts:
    """The int8 extractor, calibrated on the images `cxredge quantize` calibrates with by default."""
    images = calibration.load_images(manifest, data.dataset.root, "--int8-aware calibration")
    t0 = time.perf_counter()
    with console.status(f"int8-aware: converting the frozen backbone to int8 ({manifest.size} calibration images)"):
        model = int8_views.int8_extractor(extractor, images)
    feats.int8_calibration["convert_seconds"] = round(time.perf_counter() - t0, 2)
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
    val = fitting.RowBatches(feats.val[cut], data.splits["val"].y, k, settings.batch_size)
    history, _ = fitting.fit(trainer, train, val, settings, settings.epochs, advance, deadline)
    history["mode"] = "cached, int8-aware" if pairs else "cached"
    return history, tail


def _fit_full(model, data, settings, cw, strategy, advance, epochs, lr, deadline=None):
    """The whole network on (augmented) images; BN layers run in inference mode (tail from the input)."""
    k = len(data.classes)
    with strategy.scope():
        trainer = tail_model(model, model.layers[0].name)
        fitting.compile_model(trainer, lr, settings.label_smoothing)
    train = path_dataset(data.splits["train"].paths, data.splits["train"].y, k, settings.batch_size, settings.seed,
                         augment=True, weights=cw, noise=settings.pixel_noise)
    val = path_dataset(data.splits["val"].paths, data.splits["val"].y, k, settings.batch_size, settings.seed,
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
        joined["best_val"] = {key: p2[f"val_{key}"][best - 1]
                              for key in ("loss", "accuracy", "macro_f1", "pair_accuracy")
                              if f"val_{key}" in p2}
    return joined


def _evaluate(model, tail, variant, cuts, data, feats, settings) -> dict:
    """Test metrics from real predictions; confirm once that the full model equals the cached tail."""
    test = data.splits["test"]
    check = None
    if tail is not None:
        probs = predict(tail, feats.test[cuts[variant]])
        check, cache_diff = _check_tail(model, tail, cuts[variant], test.stream().head(CHECK_IMAGES),
                                        probs[:CHECK_IMAGES])
    else:
        probs, cache_diff = predict(model, test.stream(32)), None
    metrics = classification_metrics(test.y, probs.argmax(axis=1), data.classes)
    metrics["pair_accuracy"] = pair_accuracy(test.y, probs.argmax(axis=1), data.classes)
    block = validation.clinical_block(test.y, probs, list(data.classes), Resampler(len(test.y)))
    validation.merge_into(metrics, block)  # the clinical block (edge/evaluate/validation.py), as bench writes it
    metrics.update(variant=variant, split="test", full_vs_cached_max_abs_diff=check,
                   cache_dtype_max_abs_diff=cache_diff)
    if tail is not None and cuts[variant] in feats.int8_test:
        cut = cuts[variant]
        float_pred = {"val": predict(tail, feats.val[cut]).argmax(1), "test": probs.argmax(1)}
        metrics["int8_backbone_agreement"] = {
            split: int8_views.forecast_agreement(tail, float_pred[split], getattr(feats, f"int8_{split}")[cut])
            for split in ("val", "test")}
    return metrics


def _check_tail(model, tail, cut: str, images: np.ndarray, cached_probs: np.ndarray) -> tuple[float, float]:
    """(full model vs the tail on the exact float32 cut: the weights are shared, ~1e-7; the tail on the
    exact cut vs on the stored one: what the cache's dtype costs in probability)."""
    exact = predict(feature_extractor(model, [cut]), images)
    on_exact = predict(tail, exact)
    return (float(np.abs(predict(model, images) - on_exact).max()),
            float(np.abs(on_exact - cached_probs).max()))


def _write_run_json(out, data: TrainData, settings, results, feats, strategy, audit: dict | None) -> None:
    run = {
        "format": RUN_FORMAT,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "classes": list(data.classes), "alpha": settings.alpha, "weights": settings.weights, "image_size": 224,
        "seed": settings.seed, "variants": list(settings.variants),
        "data": {**data.dataset.describe(), "path": str(Path(data.dataset.root).resolve()),
                 "sha256": data.fingerprint()},
        "settings": settings.to_dict(),
        "versions": {"cxredge": __version__, "tensorflow": tf.__version__, "tf_keras": keras.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "devices": {**fitting.devices(), "strategy": type(strategy).__name__,
                    "replicas": strategy.num_replicas_in_sync},
        "leakage": data.leaks, "skipped_images": len(data.skipped), "skipped": data.skipped,
        "feature_cache_seconds": round(feats.seconds, 2),
        "feature_cache": {"dir": feats.cache_dir, "dtypes": feats.dtypes, "bytes": feats.cache_bytes,
                          "forward_passes": feats.forward_passes, "images_per_second": feats.images_per_second},
        "int8_aware": feats.int8_calibration,
        "audit": audit,
        "results": {m["variant"]: {key: m[key] for key in ("accuracy", "macro_f1", "params_trainable", "train_seconds")}
                    for m in results},
    }
    write_json(out / RUN_JSON, run)
