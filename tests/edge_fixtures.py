"""Tiny .tflite models for the edge tests, made with TensorFlow (test-only code may import it).

One alpha-0.25, weights=None MobileNet (cxredge.train.variants.build_model) converted to float32, full
int8 with uint8 input and uint8 output, and full int8 with int8 output, plus sidecars following
cxredge/edge/formats/sidecar.py. Built once per test session into a shared folder (all test modules reuse it),
then laid out as a run directory: run.json pointing at the tiny dataset, fc/ and two_conv/ holding
float32.tflite + int8.tflite + sidecars (the same network under two variant names keeps it fast).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from cxredge.io import sha256_file

CLASSES = ["alpha", "beta", "delta", "gamma"]  # sorted folder names of tests/conftest.py's tiny_data


def build_models(folder: Path, data: Path) -> dict[str, Path]:
    """float32.tflite, int8.tflite (uint8 in/out) and int8_i8out.tflite (uint8 in, int8 out) into `folder`."""
    done = folder / ".done"
    names = {k: folder / f"{k}.tflite" for k in ("float32", "int8", "int8_i8out")}
    if done.is_file():
        return names
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from cxredge.edge.data.dataset import load_split, scan
    from cxredge.keras import keras, tf
    from cxredge.train.variants import build_model

    keras.utils.set_random_seed(0)
    model = build_model("two_conv", len(CLASSES), alpha=0.25, weights=None)
    train = load_split(scan(data), "train")
    # weights=None MobileNet activations vanish (~1e-17 at the logits): set every BatchNorm's moving
    # statistics from one training batch, then fit the head a little, so outputs differ per image.
    for layer in model.layers:
        layer.trainable = True
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    model(train.x.astype("float32"), training=True)
    for layer in model.layers:
        layer.trainable = layer.name.startswith("head")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(train.x.astype("float32"), train.y, epochs=5, batch_size=8, verbose=0)
    calib = train.x[::2].astype("float32")

    def convert(out_type=None):
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        if out_type is not None:
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = lambda: ([x[None]] for x in calib)
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.uint8
            conv.inference_output_type = out_type
        return conv.convert()

    folder.mkdir(parents=True, exist_ok=True)
    names["float32"].write_bytes(convert())
    names["int8"].write_bytes(convert(tf.uint8))
    names["int8_i8out"].write_bytes(convert(tf.int8))
    done.write_text("ok")
    return names


def write_sidecar(model_path: Path, variant: str, precision: str, labels=CLASSES) -> Path:
    from cxredge.edge.runtime.interpreter import TFLiteModel

    m = TFLiteModel(model_path)
    side = {"format": "cxredge-sidecar/1", "model": model_path.name, "variant": variant, "precision": precision,
            "labels": list(labels),
            "input": {**m.input_spec, "pixels": "raw uint8 RGB 0-255, gray copied to 3 channels"},
            "output": {**m.output_spec, "kind": "probabilities"},
            "sha256": sha256_file(model_path), "size_bytes": model_path.stat().st_size,
            "calibration": None, "versions": {"cxredge": "test"},
            "validation": {"split": "val", "n": 16, "agreement": 0.9375, "macro_f1": 0.5, "macro_f1_float": 0.55,
                           "delta_macro_f1": -0.05, "max_abs_dprob": 0.1}}
    path = model_path.with_suffix(".json")
    path.write_text(json.dumps(side, indent=2))
    return path


def make_run(run: Path, models: dict[str, Path], data: Path, variants=("fc", "two_conv")) -> Path:
    """A run directory on the tiny dataset with float32 + int8 (+ sidecars, metrics, history) per variant."""
    run.mkdir(parents=True, exist_ok=True)
    (run / "run.json").write_text(json.dumps({
        "format": "cxredge-run/1", "classes": CLASSES, "alpha": 0.25, "weights": "none", "seed": 0,
        "variants": list(variants), "data": {"path": str(data), "layout": "splits", "split_seed": None,
                                             "classes": CLASSES}}))
    for variant in variants:
        d = run / variant
        d.mkdir(exist_ok=True)
        for precision in ("float32", "int8"):
            shutil.copy(models[precision], d / f"{precision}.tflite")
            write_sidecar(d / f"{precision}.tflite", variant, precision)
        cm = np.diag([4, 3, 2, 4]).tolist()
        (d / "metrics.json").write_text(json.dumps({
            "classes": CLASSES, "accuracy": 0.8125, "macro_precision": 0.8, "macro_recall": 0.81,
            "macro_f1": 0.8, "weighted_f1": 0.8, "confusion_matrix": cm,
            "per_class": {c: {"precision": 0.8, "recall": 0.8, "f1": 0.8, "support": 4} for c in CLASSES}}))
        (d / "history.json").write_text(json.dumps({"loss": [1.4, 1.0, 0.7], "val_loss": [1.4, 1.2, 1.0],
                                                    "accuracy": [0.3, 0.5, 0.7], "val_accuracy": [0.3, 0.4, 0.6]}))
    return run
