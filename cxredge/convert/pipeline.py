"""`cxredge quantize` end to end: run dir -> calibration set -> every requested .tflite, validated.

Order: read run.json and the dataset, resolve (or draw) the calibration manifest and verify every
image, check the validation split once (unreadable files skipped, the OOD reference's statistics
gathered; no pixels kept); then per variant: Keras reference, float32 (always: the device's reference),
then the requested modes. The Keras reference and each .tflite's validation decode the split again, in
batches (`Split.stream()`): memory holds a few batches of pixels, not the split, for one decode per image
and pass (~1.6 ms of CPU on a 2-core EPYC). Everything that can fail on user input fails before the first
model is written; every model is validated before it replaces an earlier one.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cxredge.convert import artifacts, calibration, debug, quantize, refit, validate
from cxredge.convert import bias_correction as bcorr
from cxredge.convert import equalize as cle
from cxredge.convert import rounding as lround
from cxredge.convert.qat import QatSettings, fine_tune
from cxredge.edge.data.dataset import Split, scan_recorded
from cxredge.edge.ood.guard import build_reference, checked_split
from cxredge.errors import CxrError
from cxredge.formats import QUANTIZE_JSON, RUN_JSON
from cxredge.io import read_json, sha256_file, write_json, write_text
from cxredge.keras import keras
from cxredge.model_file import load_keras_model
from cxredge.vocab import CALIBRATED_MODES, FLOAT_PRECISIONS, MODES, REFERENCE


@dataclass(frozen=True)
class QuantizeSettings:
    run: Path
    variants: tuple[str, ...]
    modes: tuple[str, ...]              # always contains float32
    io: str = "uint8"
    calibration_size: int = calibration.DEFAULT_SIZE
    calibration_file: Path | None = None
    qat: QatSettings = field(default_factory=QatSettings)
    refit_settings: refit.RefitSettings = field(default_factory=refit.RefitSettings)
    refit_images: int = 1000
    debug: bool = False
    float_fallback: int = 0
    bias_correction: bool = True
    bias_correction_images: int = bcorr.DEFAULT_IMAGES
    exact_input: bool = True            # the pixel-scaling MUL's exact output range (convert/exact_input.py)
    equalize: cle.EqualizeSettings | None = field(default_factory=cle.EqualizeSettings)  # None: --no-equalize
    rounding: str = "nearest"           # int8 weight rounding: nearest (the converter's) | learned
    rounding_images: int = lround.DEFAULT_IMAGES
    seed: int = calibration.DEFAULT_SEED
    split: str = "val"

    @property
    def needs_calibration(self) -> bool:
        return any(m in CALIBRATED_MODES for m in self.modes) or self.debug or self.float_fallback > 0


def load_run(run_dir: Path) -> dict:
    path = run_dir / RUN_JSON
    if not path.is_file():
        raise CxrError(f"--run {run_dir}: no run.json (train first: cxredge train --out {run_dir})")
    run = read_json(path)
    for key in ("classes", "data"):
        if key not in run:
            raise CxrError(f"{path}: missing '{key}'")
    if "path" not in run["data"]:
        raise CxrError(f"{path}: missing data.path")
    return run


def load_model(run_dir: Path, variant: str) -> keras.Model:
    path = run_dir / variant / "model.keras"
    if not path.is_file():
        raise CxrError(f"--variant {variant}: {path} not found (train it first)")
    return load_keras_model(path)


class Calibration:
    """The verified calibration images and the sidecar record that names their manifest."""

    def __init__(self, settings: QuantizeSettings, run: dict, ds, tracker):
        if settings.calibration_file is not None:
            src = settings.calibration_file
            manifest = calibration.read_manifest(src)
            calibration.check_classes(manifest, run["classes"], src)
        else:
            src = f"--calibration-size {settings.calibration_size}"
            manifest = calibration.draw(ds, settings.calibration_size, settings.seed,
                                        run["data"].get("sha256") or "unknown")
        step = tracker.task(f"calibration images ({manifest.size})", manifest.size)
        self.x = calibration.load_images(manifest, ds.root, src, step)
        self.manifest = manifest
        self.anchor = calibration.input_range_anchor(self.x) is not None
        self.path = settings.run / "calibration" / f"{manifest.name}.txt"

    def save(self, source: Path | None) -> None:
        if source is not None and source.resolve() == self.path.resolve():
            return
        if source is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_text(self.path, source.read_text(encoding="utf-8"))
        else:
            self.manifest.save(self.path)

    def record(self, run_dir: Path) -> dict:
        m = self.manifest
        return {"manifest": self.path.relative_to(run_dir).as_posix(), "sha256": m.sha256(), "size": m.size,
                "seed": m.seed, "dataset": m.dataset, "dataset_sha256": m.dataset_sha256,
                "input_range_anchor": self.anchor}


def quantize_run(settings: QuantizeSettings, tracker) -> list[dict]:
    """Run everything; returns one result row per written model."""
    run = load_run(settings.run)
    ds = scan_recorded(run["data"])
    if list(ds.classes) != list(run["classes"]):
        raise CxrError(f"{settings.run / RUN_JSON}: classes {run['classes']} differ from the dataset's "
                       f"{list(ds.classes)}")
    for v in settings.variants:
        if not (settings.run / v / "model.keras").is_file():
            raise CxrError(f"--variant {v}: {settings.run / v / 'model.keras'} not found (train it first)")
    calib = Calibration(settings, run, ds, tracker) if settings.needs_calibration else None
    val, ood = index_val(ds, settings.split, tracker)
    if calib is not None:
        calib.save(settings.calibration_file)
    rows: list[dict] = []
    for variant in settings.variants:
        rows += quantize_variant(settings, run, variant, val, calib, tracker, ood)
    write_json(settings.run / QUANTIZE_JSON, {"settings": _settings_record(settings), "results": rows})
    return rows


def index_val(ds, split: str, tracker) -> tuple[Split, dict]:
    """The validation split checked once (unreadable files skipped), and the OOD guard's reference
    (edge/ood/guard.py, ~1.5 ms/image) from the same pass; the pixels are dropped chunk by chunk."""
    task = tracker.task(f"{split} images", len(ds.splits[split]))
    val, stats = checked_split(ds, split, skip_bad=True, progress=task)
    return val, build_reference(stats, split).to_dict()


def quantize_variant(settings, run, variant, val: Split, calib, tracker, ood: dict | None = None) -> list[dict]:
    model = load_model(settings.run, variant)
    ref = validate.keras_reference(model, val.stream(), val.y, run["classes"], settings.split)
    out_dir = settings.run / variant
    job = _Job(settings, run, variant, ref, calib, tracker, out_dir, ood)
    float32 = quantize.convert_float(model, REFERENCE)
    rows = [job.emit(REFERENCE, float32)]
    for mode in FLOAT_PRECISIONS[1:]:  # float16, dynamic
        if mode in settings.modes:
            rows.append(job.emit(mode, quantize.convert_float(model, mode)))
    if calib is not None and (set(settings.modes) & {"int8", "refit"} or settings.debug or settings.float_fallback):
        int8, cal, qfloat, fields = job.int8(model, float32, "int8", "int8", learned_rounding=True)
        rows.append(job.emit("int8", int8, fields))
        if settings.debug or settings.float_fallback:
            rows += job.debug_and_fallback(cal, rows[-1], qfloat, {"equalize": fields["equalize"]})
        if "refit" in settings.modes:
            rows.append(job.refit_head(model, int8, float32))
    if "qat" in settings.modes:
        rows.append(job.qat(model))
    return rows


@dataclass
class _Job:
    settings: QuantizeSettings
    run: dict
    variant: str
    ref: validate.Reference
    calib: Calibration | None
    tracker: object
    out_dir: Path
    ood: dict | None = None

    def emit(self, precision: str, data: bytes, extra: dict | None = None) -> dict:
        path = self.out_dir / f"{precision}.tflite"
        step = self.tracker.task(f"{self.variant}: validating {precision}", len(self.ref.y))
        checked = artifacts.write_model(path, data, lambda tmp: validate.validate(tmp, precision, self.ref, step))
        calib = None if precision in FLOAT_PRECISIONS else self.calib.record(self.settings.run)
        extra = {"conversion": {"preset": quantize.PRESETS[precision].description,
                                "io": self.settings.io if calib else "float32",
                                **({"exact_input": self.settings.exact_input} if calib else {}), **(extra or {})},
                 "source": {"model": f"{self.variant}/model.keras",
                            "sha256": sha256_file(self.out_dir / "model.keras")}, "ood": self.ood}
        doc = artifacts.sidecar(path, data, self.variant, precision, list(self.run["classes"]), checked, calib, extra)
        return {"variant": self.variant, "precision": precision, "model": str(path), "size_bytes": len(data),
                **doc["validation"], **({"fallback": extra["conversion"]["fallback"]}
                                        if "fallback" in extra["conversion"] else {})}

    def correct(self, data: bytes, float32: bytes, precision: str) -> tuple[bytes, dict]:
        """Bias-correct a PTQ model against its float32 reference (unless --no-bias-correction)."""
        if not self.settings.bias_correction:
            return data, {"bias_correction": None}
        x = bcorr.subset(self.calib.x, self.settings.bias_correction_images)
        layers = bcorr.count_layers(data)
        task = self.tracker.task(f"{self.variant}: bias correction ({precision}, {len(x)} images)", layers)
        data, info = bcorr.correct(data, float32, x, task)
        return data, {"bias_correction": info}

    def int8(self, model: keras.Model, float32: bytes | None, precision: str, label: str,
             learned_rounding: bool) -> tuple[bytes, bytes, bytes, dict]:
        """`model` to full integer as cxredge makes int8: the int8 converter's copy (channel-equalized unless
        --no-equalize, equalize.for_int8) and that copy's float32 twin (`float32`, the model's own, when the
        copy is the model), which calibration (exact input), --rounding learned and bias correction aim at.
        float32.tflite stays the model's own. -> (int8 bytes, calibrated bytes, the twin, sidecar fields)."""
        qmodel, qfloat, info = cle.for_int8(model, self.calib.x, self.settings.equalize, float32)
        task = self.tracker.task(f"{self.variant}: calibrating {label}", len(self.calib.x) + self.calib.anchor)
        cal = quantize.calibrate(qmodel, self.calib.x, task, float_model=qfloat, exact_input=self.settings.exact_input)
        data = quantize.quantize_calibrated(cal, self.settings.io, what=f"{self.variant}/{precision}.tflite")
        rounded = {}
        if learned_rounding:
            data, rounded = self.round_weights(data, qfloat)
        data, extra = self.correct(data, qfloat, precision)
        return data, cal, qfloat, {"equalize": info, **rounded, **extra}

    def round_weights(self, data: bytes, float32: bytes) -> tuple[bytes, dict]:
        """--rounding learned: re-round the int8 weights against the float layers (convert/rounding.py)."""
        if self.settings.rounding != "learned":
            return data, {}
        task = self.tracker.task(f"{self.variant}: learned rounding ({self.settings.rounding_images} images)",
                                 lround.count_layers(data))
        settings = lround.RoundingSettings(images=self.settings.rounding_images)
        data, info = lround.learn(data, float32, self.calib.x, settings, task)
        return data, {"rounding": info}

    def debug_and_fallback(self, cal: bytes, int8_row: dict, float32: bytes, equalized: dict) -> list[dict]:
        task = self.tracker.task(f"{self.variant}: per-layer debugger", len(self.calib.x) + self.calib.anchor)
        layers = debug.layer_report(cal, self.calib.x, task)
        report = {"variant": self.variant, "images": len(self.calib.x),
                  "calibration": self.calib.record(self.settings.run), "metric": "rmse/scale", "layers": layers}
        write_json(self.out_dir / "int8_debug.json", report)
        write_text(self.out_dir / "int8_debug.md", debug.report_markdown(self.variant, layers, len(self.calib.x)))
        k = self.settings.float_fallback
        if not k:
            return []
        if k > len(layers):
            raise CxrError(f"--float-fallback {k}: the model has only {len(layers)} quantized layers")
        deny = debug.worst_layers(layers, k)
        data = quantize.quantize_calibrated(cal, self.settings.io, deny, what=f"{self.variant}/int8_fallback.tflite")
        data, extra = self.correct(data, float32, "int8_fallback")
        fb = {"k": k, "layers": [debug.short_name(t) for t in deny], "denylisted_nodes": list(deny)}
        row = self.emit("int8_fallback", data, {"fallback": fb, **equalized, **extra})
        fb.update({"agreement_gain": row["agreement"] - int8_row["agreement"],
                   "macro_f1_gain": row["macro_f1"] - int8_row["macro_f1"],
                   "size_cost_bytes": row["size_bytes"] - int8_row["size_bytes"]})
        row["fallback"] = fb
        side_path = self.out_dir / "int8_fallback.json"
        side = read_json(side_path)
        side["conversion"]["fallback"] = fb
        write_json(side_path, side)
        return [row]

    def qat(self, model: keras.Model) -> dict:
        ds_train = self._qat_images()
        qs = self.settings.qat
        qat_model, info = fine_tune(model, ds_train, qs, self.tracker.task(f"{self.variant}: QAT epochs", qs.epochs))
        task = self.tracker.task(f"{self.variant}: calibrating qat", len(self.calib.x) + self.calib.anchor)
        cal = quantize.calibrate(qat_model, self.calib.x, task, exact_input=self.settings.exact_input)
        data = quantize.quantize_calibrated(cal, self.settings.io, what=f"{self.variant}/qat_int8.tflite")
        return self.emit("qat_int8", data, {"qat": {**asdict(qs), "images_used": len(ds_train), **info}})

    def refit_head(self, model: keras.Model, int8: bytes, float32: bytes) -> dict:
        x = self._train_images(self.settings.refit_images, self.settings.seed + 2, "--refit-images")
        feats = refit.int8_features(int8, x, self.tracker.task(f"{self.variant}: int8 features", len(x)))
        teacher = model.predict(x.astype(np.float32), batch_size=32, verbose=0)
        clone, info = refit.refit_head(model, feats, teacher, self.settings.refit_settings)
        # the head was fitted to the int8 backbone: equalize, calibrate and correct the refit model the
        # same way, against its own float graph (same backbone, same images -> the same backbone)
        data, _, _, fields = self.int8(clone, None, "int8_refit", "refit", learned_rounding=False)
        refit_record = {**asdict(self.settings.refit_settings), "images_used": len(x), **info}
        return self.emit("int8_refit", data, {"refit": refit_record, **fields})

    def _qat_images(self) -> np.ndarray:
        return self._train_images(self.settings.qat.images, self.settings.qat.seed + 1, "--qat-images")

    def _train_images(self, n: int, seed: int, option: str) -> np.ndarray:
        ds = scan_recorded(self.run["data"])
        n = min(n, len(ds.splits["train"]))
        manifest = calibration.draw(ds, n, seed)
        return calibration.load_images(manifest, ds.root, option, self.tracker.task(f"train images for {option}", n))


def _settings_record(s: QuantizeSettings) -> dict:
    d = asdict(s)
    d["run"] = str(s.run)
    d["calibration_file"] = str(s.calibration_file) if s.calibration_file else None
    return d


__all__ = ["MODES", "QuantizeSettings", "quantize_run", "load_run"]
