"""Tiny models with a known answer for the saliency tests, made with TensorFlow (test-only code may import it).

region_model: 2 classes whose logits depend only on the mean pixel of one square region R of the
  224 x 224 input (Cropping2D -> global average -> Dense softmax): logit_0 = 3a (mean(R) - 128) = -logit_1.
  Occluding with gray 128 lowers class 0's probability exactly where a patch overlaps R, nowhere else.
batch1_only: the same kind of model with a reshape to [1, 3] in the graph, so a resized (batch > 1)
  interpreter cannot run it.
cam_model: a Keras model whose 7 x 7 feature map `conv_pw_13_relu` (32 x 32 average pooling, 1x1 conv, ReLU) is
  positive only where the image is brighter than 128, and whose class 0 weights are positive, class 1's
  negative: Grad-CAM for class 0 must light up the bright cells only, for class 1 nothing.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SIZE = 224
A = 0.01


def _keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from cxredge.keras import keras, tf

    return keras, tf


def _head(keras, x):
    dense = keras.layers.Dense(2, activation="softmax", name="head_out")
    y = dense(x)
    dense.set_weights([np.array([[A, -A]] * 3, np.float32), np.array([-384 * A, 384 * A], np.float32)])
    return y


def region_model(path: Path, box: tuple[int, int, int, int]) -> Path:
    """A float .tflite that only sees rows y0:y1, cols x0:x1 (box = y0, y1, x0, x1)."""
    keras, tf = _keras()
    y0, y1, x0, x1 = box
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Cropping2D(((y0, SIZE - y1), (x0, SIZE - x1)))(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return _write(tf, keras.Model(inp, _head(keras, x)), path)


def batch1_only(path: Path) -> Path:
    keras, tf = _keras()
    inp = keras.Input((SIZE, SIZE, 3), batch_size=1)
    x = tf.reshape(inp, [SIZE * SIZE, 3])  # the batch folded into pixels: a batch of 8 cannot take this shape
    x = tf.reduce_mean(x, axis=0, keepdims=True)  # (1, 3): the channel means, as a global average
    return _write(tf, keras.Model(inp, _head(keras, x)), path)


def _write(tf, model, path: Path) -> Path:
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def cam_model(path: Path) -> Path:
    """model.keras: pixels -> 32x32 average pool (7x7) -> ReLU(x - 128) (1x1 conv) -> GAP -> softmax Dense."""
    keras, _ = _keras()
    inp = keras.Input((SIZE, SIZE, 3), name="pixels")
    x = keras.layers.AveragePooling2D(32)(inp)
    conv = keras.layers.Conv2D(3, 1, name="feat_conv")
    x = conv(x)
    conv.set_weights([np.eye(3, dtype=np.float32)[None, None], np.full(3, -128.0, np.float32)])
    x = keras.layers.ReLU(name="conv_pw_13_relu")(x)  # the layer name cxredge uses on MobileNet
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(2, activation="softmax", name="head_out")
    out = dense(x)
    dense.set_weights([np.array([[1.0, -1.0]] * 3, np.float32), np.zeros(2, np.float32)])
    keras.Model(inp, out).save(path)
    return path


def flat(value: int) -> np.ndarray:
    return np.full((SIZE, SIZE, 3), value, np.uint8)
