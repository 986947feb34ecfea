"""Full-network training on augmented image batches (tf.data): --augment and the finetune phase 2.

The augmentation runs in the input pipeline, not inside the model, so the saved model stays the
plain contract model. Random left-right flip, small rotation (+-5% of a turn), zoom (+-10%),
contrast (+-10%), all seeded; and, with `noise` > 0, Gaussian pixel noise of that standard deviation
(in gray levels of 0..255). The noise is there for robustness, not for variety: a frozen ImageNet
backbone on X-rays passes imperceptible pixel noise on to the head, and a head trained on clean
images only learns to read it (half a gray level of noise flipped ~4% of test predictions, see
docs/training.md); int8 rounding inside the backbone acts the same way.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cxredge.edge.data.images import IMG_SIZE
from cxredge.edge.data.stream import decode_paths, workers
from cxredge.keras import keras, tf

# Augmentation presets (fractions as the Keras layers take them). "standard" is --augment's and the
# cached augmented views'; "light" is the finetune recipe's (no flip: the heart sits on one side).
AUGMENT_PRESETS = {
    "standard": {"flip": True, "rotation": 0.05, "translation": 0.0, "zoom": 0.1, "contrast": 0.1},
    "light": {"flip": False, "rotation": 0.03, "translation": 0.05, "zoom": 0.08, "contrast": 0.15},
    "none": None,
}


def augmenter(seed: int, noise: float = 0.0, preset: str = "standard") -> keras.Sequential:
    spec = AUGMENT_PRESETS[preset] or {"flip": False, "rotation": 0, "translation": 0, "zoom": 0, "contrast": 0}
    layers = []
    if spec["flip"]:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if spec["rotation"]:
        layers.append(keras.layers.RandomRotation(spec["rotation"], fill_mode="constant", seed=seed + 1))
    if spec["translation"]:
        t = spec["translation"]
        layers.append(keras.layers.RandomTranslation(t, t, fill_mode="constant", seed=seed + 5))
    if spec["zoom"]:
        layers.append(keras.layers.RandomZoom(spec["zoom"], fill_mode="constant", seed=seed + 2))
    if spec["contrast"]:
        layers.append(keras.layers.RandomContrast(spec["contrast"], seed=seed + 3))
    if noise > 0:
        layers.append(keras.layers.GaussianNoise(noise, seed=seed + 4))
    return keras.Sequential(layers or [keras.layers.Identity()], name="augment")


def pixel_noise(batch: np.ndarray, noise: float, seed: int) -> np.ndarray:
    """float32 pixels + seeded Gaussian noise of `noise` gray levels, clipped to 0..255."""
    x = batch.astype(np.float32)
    if noise <= 0:
        return x
    x += np.random.default_rng(seed).normal(0.0, noise, x.shape).astype(np.float32)
    return np.clip(x, 0.0, 255.0, out=x)


def view_transform(view: int, seed: int, noise: float = 0.0):
    """The cached "views" of a train image: 0 = as is, 1 = mirrored left-right, k >= 2 = randomly
    augmented (flip / rotation / zoom / contrast), reproducible from (seed, view, batch start).
    With `noise` > 0 every view but the original also gets Gaussian pixel noise (see module doc)."""
    if view == 0:
        return None
    if view == 1:
        return lambda batch, start: pixel_noise(batch[:, :, ::-1, :], noise, seed * 1_000_003 + 7 + start)

    def transform(batch, start):
        aug = augmenter(seed * 1_000_003 + view * 10_007 + start, noise)  # fresh seeded layers: reproducible
        x = aug(tf.constant(batch, dtype=tf.float32), training=True)
        return tf.clip_by_value(x, 0.0, 255.0).numpy()
    return transform


def _augmented(ds: tf.data.Dataset, seed: int, augment: bool, noise: float, preset: str) -> tf.data.Dataset:
    augment = augment and (AUGMENT_PRESETS[preset] is not None or noise > 0)
    if augment:
        aug = augmenter(seed, noise, preset)

        def apply(img, lab, sw):
            img = aug(tf.cast(img, tf.float32), training=True)
            return tf.clip_by_value(img, 0.0, 255.0), lab, sw
        ds = ds.map(apply, num_parallel_calls=1, deterministic=True)
    else:
        ds = ds.map(lambda img, lab, sw: (tf.cast(img, tf.float32), lab, sw))
    return ds.prefetch(2)


def path_dataset(paths: list[Path], y: np.ndarray, num_classes: int, batch_size: int, seed: int,
                 augment: bool, weights: np.ndarray | None = None, noise: float = 0.0,
                 preset: str = "standard", shuffle: bool | None = None) -> tf.data.Dataset:
    """image_dataset, streamed from the files: the same batches (the same seeded shuffle of the same
    rows), but each batch is decoded when the pipeline reaches it (edge/data/images.py's loader, batches
    decoded in parallel, a few in flight), so no split is ever held in memory."""
    w = (weights if weights is not None else np.ones(num_classes, np.float32))[y]
    files = list(paths)
    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(files), dtype=np.int64),
                                             np.eye(num_classes, dtype=np.float32)[y], w))
    if augment if shuffle is None else shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)

    def decode(idx, lab, sw):
        img = tf.numpy_function(lambda i: decode_paths([files[j] for j in i]), [idx], tf.uint8, stateful=False)
        img.set_shape((None, IMG_SIZE, IMG_SIZE, 3))
        return img, lab, sw
    ds = ds.map(decode, num_parallel_calls=workers(), deterministic=True)
    return _augmented(ds, seed, augment, noise, preset)


def image_dataset(x: np.ndarray, y: np.ndarray, num_classes: int, batch_size: int, seed: int,
                  augment: bool, weights: np.ndarray | None = None, noise: float = 0.0,
                  preset: str = "standard", shuffle: bool | None = None) -> tf.data.Dataset:
    """uint8 images -> float32 0..255 batches with one-hot labels (and sample weights). Shuffled
    (seeded, every epoch) when augmented unless `shuffle` says otherwise; preset "none" = no transform."""
    w = (weights if weights is not None else np.ones(num_classes, np.float32))[y]
    ds = tf.data.Dataset.from_tensor_slices((x, np.eye(num_classes, dtype=np.float32)[y], w))
    if augment if shuffle is None else shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    return _augmented(ds, seed, augment, noise, preset)
