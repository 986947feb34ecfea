"""Fitting: determinism, devices / tf.distribute, the cached-feature batches, callbacks."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from cxredge.errors import CxrError
from cxredge.keras import keras, tf
from cxredge.train.settings import TrainSettings


def set_determinism(seed: int) -> None:
    """Same seed -> same weights init, same shuffles, same dropout masks, same results."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def devices() -> dict:
    gpus = tf.config.list_physical_devices("GPU")
    return {"gpus": [d.name for d in gpus], "cpus": [d.name for d in tf.config.list_physical_devices("CPU")],
            "used": "GPU" if gpus else "CPU"}


def make_strategy(name: str) -> tf.distribute.Strategy:
    """auto: TF's default (a visible GPU is used as is); mirrored: MirroredStrategy over every GPU
    (or the CPU when there is none); cpu: pin everything to the CPU."""
    if name == "auto":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy(devices=[d.name for d in gpus] or ["/cpu:0"])
    if name == "cpu":
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    raise CxrError(f"--strategy {name}: expected auto, mirrored or cpu")


def class_weights(y: np.ndarray, num_classes: int, mode: str) -> np.ndarray:
    """Per-class loss weights: 'balanced' = n / (k * count_c) (scikit-learn's formula), else ones."""
    if mode == "none":
        return np.ones(num_classes, dtype=np.float32)
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    return (len(y) / (num_classes * np.maximum(counts, 1))).astype(np.float32)


class CachedBatches(keras.utils.Sequence):
    """Batches of cached features. `views` holds one array per cached view of the train images
    (original, mirrored, augmented...); each epoch reshuffles and picks one view per sample at random,
    a cheap augmentation that keeps the cache. With `pairs` (the int8 cuts of the same views) each
    batch is ((float, int8), y, w), the same view of each sample on both sides (train/paired.py)."""

    def __init__(self, views: list[np.ndarray], y: np.ndarray, num_classes: int, batch_size: int, seed: int,
                 weights: np.ndarray | None = None, pairs: list[np.ndarray] | None = None):
        super().__init__()
        if pairs is not None and len(pairs) != len(views):
            raise ValueError("pairs must hold one array per view")
        self.views, self.pairs, self.batch_size = views, pairs, batch_size
        self.onehot = np.eye(num_classes, dtype=np.float32)[y]
        self.sample_w = (weights if weights is not None else np.ones(num_classes, np.float32))[y]
        self.rng = np.random.default_rng(seed)
        self.on_epoch_end()

    def __len__(self) -> int:
        return int(np.ceil(len(self.views[0]) / self.batch_size))

    def on_epoch_end(self) -> None:
        n = len(self.views[0])
        self.order = self.rng.permutation(n)
        self.view = self.rng.integers(0, len(self.views), n)

    def _pick(self, arrays: list[np.ndarray], idx: np.ndarray) -> np.ndarray:
        x = arrays[0][idx]
        for v in range(1, len(arrays)):
            pick = self.view[idx] == v
            if pick.any():
                x[pick] = arrays[v][idx[pick]]
        return x

    def __getitem__(self, i: int):
        idx = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        x = self._pick(self.views, idx)
        if self.pairs is not None:
            x = (x, self._pick(self.pairs, idx))
        return x, self.onehot[idx], self.sample_w[idx]


class RowBatches(keras.utils.Sequence):
    """(features, one-hot) batches of a cached split in file order (validation: never loaded whole)."""

    def __init__(self, x, y: np.ndarray, num_classes: int, batch_size: int):
        super().__init__()
        self.x, self.onehot, self.batch_size = x, np.eye(num_classes, dtype=np.float32)[y], batch_size

    def __len__(self) -> int:
        return int(np.ceil(len(self.onehot) / self.batch_size))

    def __getitem__(self, i: int):
        s = slice(i * self.batch_size, (i + 1) * self.batch_size)
        return np.asarray(self.x[s], dtype=np.float32), self.onehot[s]


class EpochProgress(keras.callbacks.Callback):
    """Feeds a rich progress bar and records wall time per epoch."""

    def __init__(self, advance: Callable[..., None] | None):
        super().__init__()
        self.advance = advance
        self.epoch_seconds: list[float] = []
        self._t0 = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append(time.perf_counter() - self._t0)
        if self.advance:
            logs = logs or {}
            self.advance(f"loss {logs.get('loss', 0):.3f} val_loss {logs.get('val_loss', 0):.3f} "
                         f"val_acc {logs.get('val_accuracy', 0):.3f}")


class BudgetStop(keras.callbacks.Callback):
    """--max-minutes for the cached fits: stop before an epoch that would end past `deadline` (time.time())."""

    def __init__(self, deadline: float):
        super().__init__()
        self.deadline, self._t0, self.seconds = deadline, 0.0, []

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._t0)
        if time.time() + float(np.mean(self.seconds)) > self.deadline:
            self.model.stop_training = True


def compile_model(model: keras.Model, lr: float, label_smoothing: float) -> None:
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
                  metrics=["accuracy"])


def fit(model: keras.Model, train, val, settings: TrainSettings, epochs: int,
        advance: Callable[..., None] | None = None, deadline: float | None = None) -> tuple[dict, EpochProgress]:
    """model.fit with early stopping on val loss (best weights restored), and the --max-minutes
    deadline (time.time()) when one is given. Returns (history, timer)."""
    timer = EpochProgress(advance)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=settings.patience,
                                         restore_best_weights=True)
    callbacks = [timer, stop] if settings.patience > 0 else [timer]
    if deadline:
        callbacks.insert(1, BudgetStop(deadline))
    if settings.lr_patience > 0:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3,
                                                           patience=settings.lr_patience, min_lr=1e-7))
    hist = model.fit(train, validation_data=val, epochs=epochs, verbose=0, callbacks=callbacks,
                     shuffle=False)
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    if advance and len(timer.epoch_seconds) < epochs:
        advance(f"best epoch {int(np.argmin(history['val_loss'])) + 1}", done=True)
    history["epoch_seconds"] = timer.epoch_seconds
    history["best_epoch"] = (int(np.argmin(history["val_loss"])) + 1 if settings.patience > 0
                             else len(timer.epoch_seconds))
    return history, timer
