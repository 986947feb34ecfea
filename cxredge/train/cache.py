"""The feature cache: run the frozen part of MobileNet once per image, train only the tail.

Every variant's model is a linear chain of layers. Everything before the first trainable layer is
frozen, so its output (the "cut") is a fixed function of the image. We compute the cuts of all the
variants of a run in one forward pass per image (and per extra "view" of each train image: the
mirrored image, then randomly augmented ones; see augment.view_transform), then train a tail model
that re-applies the remaining layers of the full model to the cached tensor (stored on disk:
train/store.py). The layers are shared objects, so the trained tail's weights ARE the full model's weights.

Cuts (the output of the layer just before the first trainable one):
  fc        reshape_2        the 1000-d conv_preds logits
  one_conv  dropout          the global-average-pooled conv_pw_13_relu output, (1, 1, C)
  two_conv  conv_dw_13_relu  the 7x7xC depthwise output of the last block
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator

import numpy as np

from cxredge.keras import keras, tf
from cxredge.train.variants import first_trainable_index


def cut_layer_name(model: keras.Model) -> str:
    """Name of the last frozen layer of a variant model: its output is what we cache."""
    return model.layers[first_trainable_index(model) - 1].name


def feature_extractor(model: keras.Model, cut_names: list[str]) -> keras.Model:
    """One model that outputs every requested cut (frozen layers only, inference mode)."""
    outputs = [model.get_layer(name).output for name in cut_names]
    return keras.Model(model.input, outputs, name="feature_cache")


def tail_model(model: keras.Model, cut_name: str, frozen_bn: set[str] | None = None) -> keras.Model:
    """Re-apply the layers after `cut_name` to a new input; weights are shared with `model`.

    BatchNormalization layers (all, or those named in `frozen_bn`) are called with training=False (the
    Keras transfer-learning guide): their gamma/beta may train, their moving statistics stay those of
    ImageNet. The others follow the training flag.
    """
    names = [layer.name for layer in model.layers]
    k = names.index(cut_name) + 1
    cut = model.get_layer(cut_name).output
    inp = keras.Input(tuple(cut.shape[1:]), name=f"cached_{cut_name}")
    x = inp
    for layer in model.layers[k:]:
        if isinstance(layer, keras.layers.BatchNormalization) and (frozen_bn is None or layer.name in frozen_bn):
            x = layer(x, training=False)
        else:
            x = layer(x)
    return keras.Model(inp, x, name=f"{model.name}_tail")


def compiled(extractor: keras.Model):
    """The extractor as one tf.function (inference mode), traced once per batch shape."""
    return tf.function(lambda x: extractor(x, training=False), reduce_retracing=True)


def forward(fn, x: np.ndarray) -> list[np.ndarray]:
    """One backbone call on a batch of float32 pixels -> one array per cut (tests count these calls)."""
    out = fn(tf.constant(x, dtype=tf.float32))
    return [o.numpy() for o in (out if isinstance(out, (list, tuple)) else [out])]


def iter_features(extractor: keras.Model, batches: Iterable[np.ndarray], start: int = 0,
                  transform: Callable[[np.ndarray, int], np.ndarray] | None = None
                  ) -> Iterator[tuple[int, np.ndarray, list[np.ndarray]]]:
    """(first row, pixels the extractor saw, one array per cut) for each uint8 batch, rows counted from
    `start` (a view's transform is seeded by the row, so a resumed pass sees the same pixels)."""
    fn = compiled(extractor)
    row = start
    for batch in batches:
        x = transform(batch, row) if transform else batch.astype(np.float32)
        yield row, x, forward(fn, x)
        row += len(batch)


def compute_features(extractor: keras.Model, images: np.ndarray, batch_size: int = 32,
                     transform: Callable[[np.ndarray, int], np.ndarray] | None = None,
                     progress: Callable[[int], None] | None = None,
                     on_pixels: Callable[[np.ndarray], None] | None = None) -> list[np.ndarray]:
    """Run the extractor over in-memory uint8 images (small sets; train streams through iter_features),
    optionally transformed first (transform(batch, start) returns float32 pixels 0..255); one array per
    cut. `on_pixels` sees each batch of pixels the extractor saw."""
    chunks: list[list[np.ndarray]] = []
    batches = (images[s:s + batch_size] for s in range(0, len(images), batch_size))
    for _, x, out in iter_features(extractor, batches, 0, transform):
        if on_pixels:
            on_pixels(x)
        chunks.append(out)
        if progress:
            progress(len(x))
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]


def predict(model: keras.Model, x, batch_size: int = 64) -> np.ndarray:
    """Inference in batches through a tf.function (no tf.data pipeline, no per-call retracing). `x` is
    an array (or cached Rows) sliced into batches, or any iterable of batches (a streamed split)."""
    fn = tf.function(lambda t: model(t, training=False), reduce_retracing=True)
    if hasattr(x, "__getitem__") and hasattr(x, "shape"):
        batches = (x[i:i + batch_size] for i in range(0, len(x), batch_size))
    else:
        batches = iter(x)
    return np.concatenate([fn(tf.constant(b, dtype=tf.float32)).numpy() for b in batches])


def predict_many(models: list[keras.Model], batches: Iterable[np.ndarray]) -> list[np.ndarray]:
    """Every model on each batch of one pass over `batches` (a streamed split is decoded once)."""
    fns = [tf.function(lambda t, m=m: m(t, training=False), reduce_retracing=True) for m in models]
    outs: list[list[np.ndarray]] = [[] for _ in models]
    for b in batches:
        t = tf.constant(b, dtype=tf.float32)
        for out, fn in zip(outs, fns):
            out.append(fn(t).numpy())
    return [np.concatenate(o) for o in outs]
