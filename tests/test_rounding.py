"""Learned rounding (convert/rounding.py): only int8 weights change, each within one step of its float weight,
the written weights are the search's q, the layer error does not grow, and `--rounding nearest` is today's path."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("cxredge.keras")

from cxredge.convert import bias_correction as bc  # noqa: E402
from cxredge.convert import quantize  # noqa: E402
from cxredge.convert import rounding as lr  # noqa: E402
from cxredge.convert.opcheck import float_ops  # noqa: E402
from conftest import synth_image  # noqa: E402

SETTINGS = lr.RoundingSettings(images=8, sweeps=2, max_fan_in=0)  # every layer, pointwise too


@pytest.fixture(scope="module")
def models():
    """A real backbone (bundled ImageNet weights), a random head: float32, nearest int8, learned int8."""
    from cxredge.keras import keras
    from cxredge.paths import BUNDLED_WEIGHTS
    from cxredge.train.variants import build_model

    keras.utils.set_random_seed(0)
    images = np.stack([np.repeat(synth_image(i % 4, i)[..., None], 3, axis=2) for i in range(8)])
    model = build_model("fc", 4, 0.75, str(BUNDLED_WEIGHTS))
    float32 = quantize.convert_float(model, "float32")
    int8 = quantize.quantize_calibrated(quantize.calibrate(model, images, float_model=float32))
    steps = []
    learned, info = lr.learn(int8, float32, images, SETTINGS, steps.append)
    return {"images": images, "float32": float32, "int8": int8, "learned": learned, "info": info, "steps": steps}


def _tensors(data: bytes, name: str):
    """(input tensor values per image, dequantized; weights (int8); scales) of layer `name` after invoking."""
    it = bc.interpreter(data, keep_all=True)
    op = next(o for o in lr._ops(it) if o.name == name)
    return it, op


def _layer_input(data: bytes, name: str, images: np.ndarray) -> np.ndarray:
    it, op = _tensors(data, name)
    d = next(t for t in it.get_tensor_details() if t["index"] == op.inp)
    scale, zp = d["quantization"]
    inp = it.get_input_details()[0]
    out = []
    for img in images:
        it.set_tensor(inp["index"], img[None].astype(inp["dtype"]))
        it.invoke()
        out.append((it.get_tensor(op.inp)[0].astype(np.float64) - zp) * scale)
    return np.stack(out)


def _weights(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    it, op = _tensors(data, name)
    d = next(t for t in it.get_tensor_details() if t["index"] == op.weight)
    return it.get_tensor(op.weight), np.asarray(d["quantization_parameters"]["scales"], np.float64)


def _float_weights(float32: bytes, name: str) -> np.ndarray:
    it, op = _tensors(float32, name)
    return it.get_tensor(op.weight).astype(np.float64)


def _centered_error(rows: np.ndarray, v: np.ndarray, w: np.ndarray) -> float:
    """||X (v - w)||^2 over rows, X centered: the layer's output error, mean taken out (bias correction's job)."""
    x = rows - rows.mean(0)
    return float(((x @ (v - w).T) ** 2).sum())


def test_only_int8_weights_change_each_within_one_step_and_the_model_stays_full_integer(models):
    from tensorflow.lite.tools import flatbuffer_utils as fu

    before, after = (fu.read_model_from_bytearray(bytearray(models[k])) for k in ("int8", "learned"))
    sb, sa = before.subgraphs[0], after.subgraphs[0]
    assert len(sb.operators) == len(sa.operators) and len(sb.tensors) == len(sa.tensors)
    weight_buffers = {sb.tensors[op.inputs[1]].buffer for op in sb.operators if len(op.inputs) > 2}
    changed = set()
    for tb, ta in zip(sb.tensors, sa.tensors):
        assert tb.type == ta.type and list(tb.shape) == list(ta.shape)
        if tb.quantization is not None and tb.quantization.scale is not None:
            assert np.array_equal(tb.quantization.scale, ta.quantization.scale)
            assert np.array_equal(tb.quantization.zeroPoint, ta.quantization.zeroPoint)
        b = before.buffers[tb.buffer].data
        a = after.buffers[ta.buffer].data
        if (b is None) != (a is None) or (b is not None and bytes(bytearray(b)) != bytes(bytearray(a))):
            changed.add(tb.buffer)
    assert changed and changed <= weight_buffers, "only weight buffers may change"
    assert float_ops(models["learned"]) == []
    quantize.check_io(models["learned"], "uint8", "learned")
    # every written weight is floor or ceil of w / scale (the converter's grid, same scale)
    nearest, learned = lr.int8_weights(models["int8"]), lr.int8_weights(models["learned"])
    for name in learned:
        w = _float_weights(models["float32"], name)
        _, s = _weights(models["learned"], name)
        axis = 3 if learned[name].ndim == 4 and learned[name].shape[0] == 1 else 0
        shape = [1] * w.ndim
        shape[axis] = -1
        ratio = w / s.reshape(shape)
        assert np.all(np.abs(learned[name] - ratio) < 1 + 1e-6), name
        assert np.all(np.abs(nearest[name] - ratio) <= 0.5 + 1e-4), name
    info = models["info"]
    assert info["weights_changed"] == sum(int((nearest[k] != learned[k]).sum()) for k in learned) > 0
    assert info["layers"] == lr.count_layers(models["int8"]) == len(models["steps"])
    assert info["images"] == 8 and info["sweeps"] == 2


def test_written_weights_are_the_search_result_for_the_first_conv(models):
    """conv1 sees the same input in every model: redo its search from scratch, compare with the file."""
    name = next(iter(lr.int8_weights(models["int8"])))
    x_q = _layer_input(models["int8"], name, models["images"])
    x_f = _layer_input(models["float32"], name, models["images"])
    q_raw, s = _weights(models["int8"], name)
    it, op = _tensors(models["int8"], name)
    from tensorflow.lite.tools import flatbuffer_utils as fu

    options = fu.read_model_from_bytearray(bytearray(models["int8"])).subgraphs[0].operators[op.index].builtinOptions
    stats = lr._Stats()
    for xq, xf in zip(x_q, x_f):
        stats.add(*lr._rows(op, options, xq[None].astype(np.float32), xf[None].astype(np.float32), q_raw.shape))
    w = _float_weights(models["float32"], name).reshape(len(s), -1)
    q, e0, e1 = lr.search(q_raw.reshape(len(s), -1), w, s, stats, SETTINGS)
    written, _ = _weights(models["learned"], name)
    assert np.array_equal(written.reshape(len(s), -1), q)
    assert (e1 <= e0).all()


def test_layer_output_error_does_not_grow_on_the_calibration_images(models):
    """For every pointwise layer the method rounded, on its input as the learned int8 graph computes it:
    the centered output error with the learned weights <= with the converter's nearest rounding."""
    x = models["images"]
    rounded = [la["layer"] for la in models["info"]["per_layer"] if "skipped" not in la]
    pointwise = [n for n in rounded if "conv_pw_" in n][:4]
    assert pointwise
    gains = []
    for name in pointwise:
        rows = _layer_input(models["learned"], name, x)
        rows = rows.reshape(-1, rows.shape[-1])
        w = _float_weights(models["float32"], name).reshape(-1, rows.shape[1])
        q_near, s = _weights(models["int8"], name)
        q_learn, _ = _weights(models["learned"], name)
        e_near = _centered_error(rows, q_near.reshape(len(s), -1) * s[:, None], w)
        e_learn = _centered_error(rows, q_learn.reshape(len(s), -1) * s[:, None], w)
        assert e_learn <= e_near * (1 + 1e-6), (name, e_near, e_learn)
        gains.append(e_near - e_learn)
    assert max(gains) > 0


def test_same_images_same_bytes(models):
    again, _ = lr.learn(models["int8"], models["float32"], models["images"], SETTINGS)
    assert again == models["learned"]


def test_rounding_nearest_is_todays_path_byte_for_byte_and_learned_is_recorded(tiny_data, tmp_path):
    from test_quantize import invoke, make_run

    from cxredge.convert import calibration
    from cxredge.convert.equalize import EqualizeSettings, equalize
    from cxredge.keras import keras

    run = make_run(tmp_path / "run", tiny_data)
    res = invoke("--run", str(run), "--mode", "int8", "--calibration-size", "8", "--rounding", "nearest")
    assert res.exit_code == 0, res.output
    got = (run / "fc" / "int8.tflite").read_bytes()
    side = json.loads((run / "fc" / "int8.json").read_text())
    assert "rounding" not in side["conversion"]
    # today's path, by hand: equalize a copy, calibrate on its float32 bytes, MLIR quantize, bias-correct
    # 64 (here all 8) images against the copy's float graph
    manifest = calibration.read_manifest(run / "calibration" / "train_n8_seed0.txt")
    x = calibration.load_images(manifest, tiny_data, "test")
    model = keras.models.load_model(run / "fc" / "model.keras")
    copy, _ = equalize(model, x, EqualizeSettings())
    f32 = quantize.convert_float(copy, "float32")
    plain = quantize.quantize_calibrated(quantize.calibrate(copy, x, float_model=f32))
    assert bc.correct(plain, f32, bc.subset(x, bc.DEFAULT_IMAGES))[0] == got

    res = invoke("--run", str(run), "--mode", "int8", "--calibration", str(run / "calibration" / "train_n8_seed0.txt"),
                 "--rounding", "learned", "--rounding-images", "8")
    assert res.exit_code == 0, res.output
    record = json.loads((run / "fc" / "int8.json").read_text())["conversion"]["rounding"]
    assert record["method"] == "learned" and record["images"] == 8 and len(record["per_layer"]) == record["layers"]
    assert float_ops((run / "fc" / "int8.tflite").read_bytes()) == []


def test_bad_rounding_option_is_one_line(tmp_path, tiny_data):
    from test_quantize import invoke, make_run

    run = make_run(tmp_path / "run", tiny_data)
    res = invoke("--run", str(run), "--rounding", "stochastic")
    assert res.exit_code != 0 and "--rounding stochastic" in res.output
    res = invoke("--run", str(run), "--rounding", "learned", "--rounding-images", "0")
    assert res.exit_code != 0 and "--rounding-images 0" in res.output
