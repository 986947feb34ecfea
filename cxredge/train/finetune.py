"""`--variant finetune` phase 2: the whole network (or its last K blocks) on augmented images.

The recipe (docs/training.md "finetune"; measured in benchmarks/train/finetune_sweep.py, on val):
AdamW (decoupled weight decay, not on BatchNorm or biases), a linear learning-rate warm-up then
cosine decay to 0 over the phase, label smoothing, no augmentation (`--finetune-augment none`: it won
on val over 3 seeds against the "light" preset), BatchNorm frozen on its ImageNet statistics
(`--bn-mode inference`: a val tie with `train` over 3 seeds, and the int8 model keeps 98.5-99.3%
agreement instead of 95.5-96.7%) or on batch statistics (`train`), and early stopping on val macro-F1
with the best epoch's weights (moving statistics included) restored. `--max-minutes` stops before
an epoch that would end past the budget, and inside an epoch that has already crossed it. `--pair-weight W`
multiplies the loss weight of the Bacterial and Viral images (the hard pair). `--ema D`
scores and keeps an exponential moving average of the weights instead (train/ema.py).
"""
from __future__ import annotations

import math
import re
import time
from contextlib import nullcontext
from typing import Callable

import numpy as np

from cxredge.edge.evaluate.metrics import classification_metrics
from cxredge.keras import keras, tf
from cxredge.train.augment import path_dataset
from cxredge.train.cache import predict, tail_model
from cxredge.train.ema import WeightEMA
from cxredge.train.settings import TrainSettings

PAIR = ("Bacterial", "Viral")  # the hard pair of chest_xray_4class (class names containing these)


class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from peak/warmup to `peak` over `warmup` steps, then cosine decay to 0 at `total`."""

    def __init__(self, peak: float, warmup: int, total: int):
        self.peak, self.warmup, self.total = float(peak), int(warmup), max(int(total), 1)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = self.peak * (step + 1.0) / float(max(self.warmup, 1))
        progress = tf.clip_by_value((step - self.warmup) / float(max(self.total - self.warmup, 1)), 0.0, 1.0)
        cosine = 0.5 * self.peak * (1.0 + tf.cos(math.pi * progress))
        return tf.where(step < self.warmup, warm, cosine)

    def get_config(self) -> dict:
        return {"peak": self.peak, "warmup": self.warmup, "total": self.total}


def make_optimizer(settings: TrainSettings, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    total = steps_per_epoch * settings.finetune_epochs
    schedule = WarmupCosine(settings.finetune_lr, round(settings.warmup_epochs * steps_per_epoch), total)
    if settings.weight_decay <= 0:
        return keras.optimizers.Adam(schedule)
    opt = keras.optimizers.AdamW(schedule, weight_decay=settings.weight_decay)
    opt.exclude_from_weight_decay(var_names=["_bn", "bias", "gamma", "beta"])
    return opt


def bn_block(name: str) -> int | None:
    """MobileNet block of a BatchNormalization layer: 0 for the stem (conv1_bn), K for conv_dw_K_bn /
    conv_pw_K_bn; None for any other name."""
    if name == "conv1_bn":
        return 0
    m = re.fullmatch(r"conv_(?:dw|pw)_(\d+)_bn", name)
    return int(m.group(1)) if m else None


def trainer_model(model: keras.Model, bn_mode: str, freeze_blocks: int = 0) -> keras.Model:
    """The model fit() trains (layers shared with `model`, which stays uncompiled so model.keras holds
    no optimizer): BN follows the training flag ("train") or always runs on its moving statistics
    ("inference"); with `freeze_blocks` K > 0 in train mode, the stem's and blocks 1..K's BN keep theirs."""
    if bn_mode == "inference":
        return tail_model(model, model.layers[0].name)
    if freeze_blocks:
        frozen = {layer.name for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
                  and (block := bn_block(layer.name)) is not None and block <= freeze_blocks}
        return tail_model(model, model.layers[0].name, frozen_bn=frozen)
    return keras.Model(model.input, model.output, name=f"{model.name}_trainer")


def pair_indices(classes) -> list[int]:
    """Indices of the hard pair's classes (Bacterial and Viral pneumonia); [] when the classes lack it."""
    idx = [i for p in PAIR for i, c in enumerate(classes) if p.lower() in c.lower()]
    return idx if len(idx) == 2 else []


def pair_weighted(cw: np.ndarray, classes, weight: float) -> np.ndarray:
    """`--pair-weight W`: the loss weight of the hard pair's images times W (the other classes keep theirs)."""
    out = np.asarray(cw, np.float32).copy()
    out[pair_indices(classes)] *= weight
    return out


def pair_accuracy(y: np.ndarray, pred: np.ndarray, classes) -> float | None:
    """Accuracy on the images whose true class is Bacterial or Viral pneumonia (a prediction of the
    other pneumonia class, or of any other class, is wrong); None when the classes lack the pair."""
    idx = pair_indices(classes)
    if not idx:
        return None
    mask = np.isin(y, idx)
    return float((pred[mask] == y[mask]).mean()) if mask.any() else None


def val_scores(model: keras.Model, x, y: np.ndarray, classes) -> dict:
    """Loss, accuracy, macro-F1 and pair accuracy on val; `x` is an image array or a streamed split."""
    probs = predict(model, x, batch_size=32)
    pred = probs.argmax(1)
    m = classification_metrics(y, pred, classes)
    loss = float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)).mean())
    return {"val_loss": loss, "val_accuracy": float(m["accuracy"]), "val_macro_f1": float(m["macro_f1"]),
            "val_pair_accuracy": pair_accuracy(y, pred, classes)}


class ValMonitor(keras.callbacks.Callback):
    """Per epoch: val loss / accuracy / macro-F1 of `model` (inference mode; its weight average when
    `ema` is given), early stopping on macro-F1, the time budget; restores the best epoch's weights
    when training ends. Feeds a rich bar per batch."""

    def __init__(self, model, val, classes, patience: int, deadline: float | None,
                 bar: Callable[..., None] | None = None, ema: WeightEMA | None = None):
        super().__init__()
        self.target, (self.x, self.y), self.classes, self.ema = model, val, classes, ema
        self.patience, self.deadline, self.bar = patience, deadline, bar
        self.best, self.best_epoch, self.best_weights, self.wait = -1.0, 0, None, 0
        self.epoch_seconds: list[float] = []
        self.stop_reason = ""
        self._t0 = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self.ema:
            self.ema.update()
        if self.bar:
            self.bar(1, None)
        if self.deadline and time.time() > self.deadline:
            self.model.stop_training, self.stop_reason = True, "time budget (inside an epoch)"

    def on_epoch_end(self, epoch, logs=None):
        with self.ema.swapped() if self.ema else nullcontext():
            scores = val_scores(self.target, self.x, self.y, self.classes)
            improved = scores["val_macro_f1"] > self.best + 1e-9
            if improved:
                self.best, self.best_epoch, self.wait = scores["val_macro_f1"], epoch + 1, 0
                self.best_weights = self.target.get_weights()
        if logs is not None:
            logs.update({k: v for k, v in scores.items() if v is not None})
        self.epoch_seconds.append(time.perf_counter() - self._t0)
        if not improved:
            self.wait += 1
        if self.patience and self.wait >= self.patience:
            self.model.stop_training, self.stop_reason = True, f"early stop (no val macro-F1 gain in {self.patience})"
        if self.deadline and time.time() + float(np.mean(self.epoch_seconds)) > self.deadline:
            self.model.stop_training = True
            self.stop_reason = self.stop_reason or "time budget (next epoch would end past it)"
        if self.bar:
            loss = (logs or {}).get("loss", float("nan"))
            self.bar(0, f"ep {epoch + 1} loss {loss:.3f} val acc {scores['val_accuracy']:.3f} "
                        f"F1 {scores['val_macro_f1']:.3f} (best {self.best:.3f} @ {self.best_epoch})")

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.target.set_weights(self.best_weights)


def _mode(settings: TrainSettings) -> str:
    mode = f"full network, BN {settings.bn_mode}"
    if settings.bn_freeze_blocks and settings.bn_mode == "train":
        mode += f" (stem + blocks 1-{settings.bn_freeze_blocks} frozen)"
    return mode + (f", weight EMA {settings.ema}" if settings.ema else "")


def fit_phase2(model, data, settings: TrainSettings, cw, strategy, bar_factory, deadline: float | None) -> dict:
    """Train `model` end to end; returns its history (val_* per epoch, epoch_seconds, best_epoch)."""
    k, train_split, val_split = len(data.classes), data.splits["train"], data.splits["val"]
    steps = int(np.ceil(len(train_split.y) / settings.batch_size))
    with strategy.scope():
        trainer = trainer_model(model, settings.bn_mode, settings.bn_freeze_blocks)
        trainer.compile(optimizer=make_optimizer(settings, steps),
                        loss=keras.losses.CategoricalCrossentropy(label_smoothing=settings.label_smoothing),
                        metrics=["accuracy"])
    cw = pair_weighted(cw, data.classes, settings.pair_weight)
    train = path_dataset(train_split.paths, train_split.y, k, settings.batch_size, settings.seed, augment=True,
                         weights=cw, noise=settings.pixel_noise, preset=settings.finetune_augment, shuffle=True)
    bar = bar_factory("finetune phase 2", settings.finetune_epochs * steps)
    ema = WeightEMA(model, settings.ema) if settings.ema > 0 else None
    monitor = ValMonitor(model, (val_split.stream(32), val_split.y), data.classes, settings.finetune_patience, deadline,
                         bar, ema)
    hist = trainer.fit(train, epochs=settings.finetune_epochs, verbose=0, callbacks=[monitor], shuffle=False)
    history = {key: [float(v) for v in vals] for key, vals in hist.history.items()}
    history.update(epoch_seconds=monitor.epoch_seconds, best_epoch=monitor.best_epoch,
                   stop_reason=monitor.stop_reason or "all epochs", ema=settings.ema, mode=_mode(settings))
    bar(0, f"best val macro-F1 {monitor.best:.3f} at epoch {monitor.best_epoch}; {history['stop_reason']}", done=True)
    return history
