"""Bias correction: only int32 biases change, the model stays full-integer, the mean error shrinks."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cxredge.keras")

from cxredge.convert import bias_correction as bc  # noqa: E402
from cxredge.convert import quantize  # noqa: E402
from cxredge.convert.opcheck import float_ops  # noqa: E402
from cxredge.errors import CxrError  # noqa: E402
from conftest import synth_image  # noqa: E402


@pytest.fixture(scope="module")
def models():
    """A real backbone (bundled ImageNet weights), a random head: float32, int8 and corrected int8."""
    from cxredge.keras import keras
    from cxredge.paths import BUNDLED_WEIGHTS
    from cxredge.train.variants import build_model

    keras.utils.set_random_seed(0)
    images = np.stack([np.repeat(synth_image(i % 4, i)[..., None], 3, axis=2) for i in range(16)])
    model = build_model("fc", 4, 0.75, str(BUNDLED_WEIGHTS))
    float32 = quantize.convert_float(model, "float32")
    int8 = quantize.quantize_calibrated(quantize.calibrate(model, images[:8], float_model=float32))
    steps = []
    fixed, info = bc.correct(int8, float32, images[:8], steps.append)
    return {"images": images, "float32": float32, "int8": int8, "fixed": fixed, "info": info, "steps": steps}


def layer_errors(data: bytes, float32: bytes, images: np.ndarray) -> np.ndarray:
    """Mean |per-channel mean error| of every biased layer against the float model."""
    layers = bc._layers(bc.interpreter(data, keep_all=True), want_int32_bias=True)
    f_layers = {la.name: la for la in bc._layers(bc.interpreter(float32, keep_all=True), want_int32_bias=False)}
    q = bc.channel_means(bc.interpreter(data, keep_all=True), images, [la.output for la in layers])
    f = bc.channel_means(bc.interpreter(float32, keep_all=True), images, [f_layers[la.name].output for la in layers])
    return np.array([np.abs(a - b).mean() for a, b in zip(q, f)])


def test_only_int32_biases_change_and_the_model_stays_full_integer(models):
    from tensorflow.lite.tools import flatbuffer_utils as fu

    before, after = (fu.read_model_from_bytearray(bytearray(models[k])) for k in ("int8", "fixed"))
    sub_b, sub_a = before.subgraphs[0], after.subgraphs[0]
    assert len(sub_b.operators) == len(sub_a.operators) and len(sub_b.tensors) == len(sub_a.tensors)
    bias_buffers = {sub_b.tensors[op.inputs[2]].buffer for op in sub_b.operators
                    if len(op.inputs) > 2 and op.inputs[2] >= 0}
    changed = set()
    for i, (tb, ta) in enumerate(zip(sub_b.tensors, sub_a.tensors)):
        assert tb.type == ta.type and list(tb.shape) == list(ta.shape)
        if tb.quantization is not None and tb.quantization.scale is not None:
            assert np.array_equal(tb.quantization.scale, ta.quantization.scale)
            assert np.array_equal(tb.quantization.zeroPoint, ta.quantization.zeroPoint)
        bytes_b = (bytes(bytearray(before.buffers[tb.buffer].data)) if before.buffers[tb.buffer].data is not None
                   else b"")
        bytes_a = bytes(bytearray(after.buffers[ta.buffer].data)) if after.buffers[ta.buffer].data is not None else b""
        if bytes_b != bytes_a:
            changed.add(tb.buffer)
    assert changed and changed <= bias_buffers, "only bias buffers may change"
    assert len(changed) >= models["info"]["layers"] // 2
    assert float_ops(models["fixed"]) == []
    quantize.check_io(models["fixed"], "uint8", "corrected")
    assert models["info"]["layers"] == bc.count_layers(models["int8"]) == len(models["steps"])
    assert models["info"]["images"] == 8


def test_mean_error_shrinks_on_the_calibration_images_and_beyond(models):
    x, f32 = models["images"], models["float32"]
    before, after = layer_errors(models["int8"], f32, x[:8]), layer_errors(models["fixed"], f32, x[:8])
    assert after.sum() < 0.5 * before.sum(), (before, after)
    assert after[-1] < 0.5 * before[-1]  # the head's last layer: what the answer reads
    held_b, held_a = layer_errors(models["int8"], f32, x[8:]), layer_errors(models["fixed"], f32, x[8:])
    assert held_a.sum() < held_b.sum(), (held_b, held_a)


def test_same_images_same_bytes(models):
    again, _ = bc.correct(models["int8"], models["float32"], models["images"][:8])
    assert again == models["fixed"]


def test_a_float_model_of_another_network_is_refused(models):
    from cxredge.keras import keras

    inp = keras.Input((224, 224, 3))
    other = keras.Model(inp, keras.layers.Dense(4, name="elsewhere")(keras.layers.GlobalAveragePooling2D()(inp)))
    with pytest.raises(CxrError, match="not the same network"):
        bc.correct(models["int8"], quantize.convert_float(other, "float32"), models["images"][:2])
    with pytest.raises(CxrError, match="no calibration images"):
        bc.correct(models["int8"], models["float32"], models["images"][:0])


def test_subset_spreads_evenly_over_the_class_sorted_manifest():
    x = np.arange(200)  # a manifest of 4 classes x 50 images, sorted by class folder
    sub = bc.subset(x, 64)
    assert len(sub) == 64 and sub[0] == 0 and sub[-1] == 199 and np.all(np.diff(sub) > 0)
    assert np.bincount(sub // 50).tolist() == [16, 16, 16, 16]
    assert bc.subset(x[:10], 64) is not None and len(bc.subset(x[:10], 64)) == 10
