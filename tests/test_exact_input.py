"""The pixel-scaling MUL of an int8 model is lossless: uint8 pixels reach the network exactly."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cxredge.keras")

from cxredge.convert import exact_input, quantize  # noqa: E402
from cxredge.convert.bias_correction import interpreter  # noqa: E402
from cxredge.convert.opcheck import float_ops  # noqa: E402


@pytest.fixture(scope="module")
def calibrations():
    """The same model and images calibrated with the exact pixel range (the default) and without it."""
    from cxredge.keras import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((224, 224, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="scale_to_pm1")(inp)
    x = keras.layers.Conv2D(4, 3, strides=4, padding="same", activation="relu6", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="out")(x))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 224, 224, 3), dtype=np.uint8)
    float32 = quantize.convert_float(model, "float32")
    return {"exact": quantize.calibrate(model, images, float_model=float32),
            "plain": quantize.calibrate(model, images, float_model=float32, exact_input=False)}


def every_gray_level() -> np.ndarray:
    return np.resize(np.arange(256, dtype=np.uint8), (1, 224, 224, 3))


def mul_output(int8: bytes, image: np.ndarray) -> np.ndarray:
    """The MUL's output as the int8 model holds it, dequantized."""
    it = interpreter(int8, keep_all=True)
    it.set_tensor(it.get_input_details()[0]["index"], image)
    it.invoke()
    d = next(d for d in it.get_tensor_details() if d["name"].endswith("scale_to_pm1/mul"))
    scale, zero_point = d["quantization"]
    return (it.get_tensor(d["index"]).astype(np.float64) - zero_point) * scale


def test_pixels_pass_the_scaling_losslessly_only_with_the_exact_range(calibrations):
    image = every_gray_level()
    want = image.astype(np.float64) / 127.5
    exact = quantize.quantize_calibrated(calibrations["exact"])
    plain = quantize.quantize_calibrated(calibrations["plain"])
    assert np.abs(mul_output(exact, image) - want).max() < 1e-6
    # the calibrator's range: a coarser step than one gray level, so pixels are rounded
    assert np.abs(mul_output(plain, image) - want).max() > 0.5 / 127.5
    assert float_ops(exact) == []  # still full-integer, uint8 pixels in


def test_only_the_pixel_scaling_range_changes(calibrations):
    from tensorflow.lite.tools import flatbuffer_utils as fu

    calibrated = calibrations["plain"]
    data, record = exact_input.apply(calibrated)
    assert data == calibrations["exact"]  # what calibrate() gives by default
    assert [r["tensor"].endswith("scale_to_pm1/mul") for r in record] == [True]
    assert record[0]["exact"] == pytest.approx([0.0, 2.0], abs=1e-6)
    before, after = (fu.read_model_from_bytearray(bytearray(b)) for b in (calibrated, data))

    def stats(t):
        q = t.quantization
        return None if q is None or q.min is None else (list(q.min), list(q.max))

    changed = [a.name for a, b in zip(after.subgraphs[0].tensors, before.subgraphs[0].tensors) if stats(a) != stats(b)]
    assert len(changed) == 1
    assert exact_input.apply(data)[0] == data  # idempotent: same statistics, same bytes


def test_a_model_without_pixel_scaling_is_left_alone():
    from cxredge.keras import keras

    inp = keras.Input((224, 224, 3), name="pixels")
    x = keras.layers.Conv2D(2, 8, strides=8, name="conv")(inp)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(x)))
    images = np.random.default_rng(1).integers(0, 256, size=(3, 224, 224, 3), dtype=np.uint8)
    cal = quantize.calibrate(model, images, float_model=quantize.convert_float(model, "float32"))
    assert exact_input.apply(cal) == (cal, [])
