"""Full-network training on augmented image batches (tf.data): --augment and the finetune phase 2.

The augmentation runs in the input pipeline, not inside the model, so the saved model stays the
plain contract model. Random left-right flip, small rotation (+-5% of a turn), zoom (+-10%),
contrast (+-10%), all seeded.
"""
from __future__ import annotations

import numpy as np

from cxredge.keras import keras, tf


def augmenter(seed: int) -> keras.Sequential:
    return keras.Sequential([
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomRotation(0.05, fill_mode="constant", seed=seed + 1),
        keras.layers.RandomZoom(0.1, fill_mode="constant", seed=seed + 2),
        keras.layers.RandomContrast(0.1, seed=seed + 3),
    ], name="augment")


def view_transform(view: int, seed: int):
    """The cached "views" of a train image: 0 = as is, 1 = mirrored left-right, k >= 2 = randomly
    augmented (flip / rotation / zoom / contrast), reproducible from (seed, view, batch start)."""
    if view == 0:
        return None
    if view == 1:
        return lambda batch, start: batch[:, :, ::-1, :].astype(np.float32)

    def transform(batch, start):
        aug = augmenter(seed * 1_000_003 + view * 10_007 + start)  # fresh seeded layers: reproducible
        x = aug(tf.constant(batch, dtype=tf.float32), training=True)
        return tf.clip_by_value(x, 0.0, 255.0).numpy()
    return transform


def image_dataset(x: np.ndarray, y: np.ndarray, num_classes: int, batch_size: int, seed: int,
                  augment: bool, weights: np.ndarray | None = None) -> tf.data.Dataset:
    """uint8 images -> float32 0..255 batches with one-hot labels (and sample weights)."""
    w = (weights if weights is not None else np.ones(num_classes, np.float32))[y]
    ds = tf.data.Dataset.from_tensor_slices((x, np.eye(num_classes, dtype=np.float32)[y], w))
    if augment:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augment:
        aug = augmenter(seed)

        def apply(img, lab, sw):
            img = aug(tf.cast(img, tf.float32), training=True)
            return tf.clip_by_value(img, 0.0, 255.0), lab, sw
        ds = ds.map(apply, num_parallel_calls=1, deterministic=True)
    else:
        ds = ds.map(lambda img, lab, sw: (tf.cast(img, tf.float32), lab, sw))
    return ds.prefetch(2)
