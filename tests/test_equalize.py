"""Channel equalization: the copy computes the same function, quiet channels get a finer int8 step."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cxredge.keras")

from cxredge.convert import equalize as cle  # noqa: E402
from cxredge.convert import quantize  # noqa: E402
from cxredge.convert.bias_correction import interpreter  # noqa: E402
from cxredge.errors import CxrError  # noqa: E402

QUIET = (0, 1, 2)  # channels of the first conv that never get far above zero


def chain(prefix: str = "", quiet_gamma: float = 0.01):
    """conv -> BN -> ReLU6 -> pad -> depthwise -> BN -> ReLU6 -> 1x1 conv -> BN -> ReLU6 -> GAP -> dense,
    with a few quiet channels whose values the 1x1 conv weighs heavily."""
    from cxredge.keras import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((224, 224, 3), name=f"{prefix}pixels")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name=f"{prefix}scale")(inp)
    x = keras.layers.Conv2D(8, 3, strides=4, padding="same", use_bias=False, name=f"{prefix}c1")(x)
    x = keras.layers.BatchNormalization(name=f"{prefix}c1_bn")(x)
    x = keras.layers.ReLU(6.0, name=f"{prefix}c1_relu")(x)
    x = keras.layers.ZeroPadding2D(name=f"{prefix}pad")(x)
    x = keras.layers.DepthwiseConv2D(3, use_bias=False, name=f"{prefix}dw")(x)
    x = keras.layers.BatchNormalization(name=f"{prefix}dw_bn")(x)
    x = keras.layers.ReLU(6.0, name=f"{prefix}dw_relu")(x)
    x = keras.layers.Conv2D(6, 1, use_bias=False, name=f"{prefix}pw")(x)
    x = keras.layers.BatchNormalization(name=f"{prefix}pw_bn")(x)
    x = keras.layers.ReLU(6.0, name=f"{prefix}pw_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name=f"{prefix}gap")(x)
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax", name=f"{prefix}out")(x))
    rng = np.random.default_rng(0)
    for name in ("c1_bn", "dw_bn", "pw_bn"):
        bn = model.get_layer(prefix + name)
        c = bn.get_weights()[0].size
        gamma = rng.uniform(0.8, 1.5, c).astype(np.float32)
        beta = rng.uniform(0.5, 1.5, c).astype(np.float32)
        if name != "pw_bn":
            gamma[list(QUIET)], beta[list(QUIET)] = quiet_gamma, 0.02
        bn.set_weights([gamma, beta, rng.normal(0, 0.1, c).astype(np.float32), np.ones(c, np.float32)])
    pw = model.get_layer(prefix + "pw")
    k = pw.get_weights()[0]
    loud = [c for c in range(k.shape[2]) if c not in QUIET]
    k[:, :, list(QUIET), :] *= 60.0  # the network downstream depends on the quiet channels' detail
    k[:, :, loud, :] *= 0.05
    pw.set_weights([k])
    return model


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).integers(0, 256, size=(12, 224, 224, 3), dtype=np.uint8)


def weights_of(model) -> list[np.ndarray]:
    return [w.copy() for w in model.get_weights()]


def test_pairs_of_a_chain_skip_padding_and_stop_at_the_pooled_head():
    pairs = cle.find_pairs(chain())
    assert pairs == [cle.Pair((), "c1_bn", "c1_relu", "dw"), cle.Pair((), "dw_bn", "dw_relu", "pw")]


def test_equalized_copy_computes_the_same_function_and_leaves_the_model_alone(images):
    model = chain()
    before = weights_of(model)
    copy, record = cle.equalize(model, images, cle.EqualizeSettings(pairs=2))
    assert copy is not model
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    x = images.astype(np.float32)
    np.testing.assert_allclose(copy.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    assert record["pairs_equalized"] == 2
    first = record["layers"][0]
    assert first["relu"] == "c1_relu" and first["consumer"] == "dw"
    assert first["scaled"] >= len(QUIET) and 1.0 < first["max_scale"] <= 16.0


def test_pairs_setting_limits_the_depth_and_zero_pairs_return_the_model(images):
    model = chain()
    _, one = cle.equalize(model, images, cle.EqualizeSettings(pairs=1))
    assert [la["relu"] for la in one["layers"]] == ["c1_relu"]
    same, none = cle.equalize(model, images, cle.EqualizeSettings(pairs=0))
    assert same is model and none["pairs_equalized"] == 0


def test_scales_map_each_channel_maximum_to_six_within_bounds():
    s = cle.scales_for(np.array([0.0, 0.1, 0.5, 3.0, 6.0, 5.99]), cle.EqualizeSettings(margin=1.0, max_scale=16.0))
    np.testing.assert_allclose(s, [1.0, 16.0, 12.0, 2.0, 1.0, 6.0 / 5.99], rtol=1e-6)
    assert (cle.scales_for(np.array([1.0]), cle.EqualizeSettings(margin=2.0)) == 3.0).all()


def test_bad_settings_are_refused(images):
    with pytest.raises(CxrError, match="margin"):
        cle.equalize(chain(), images, cle.EqualizeSettings(margin=0.5))


def int8_error(model, float_model, images) -> float:
    """Mean |int8 - float| of the softmax outputs (int8 of `model`, float of `float_model`)."""
    f32 = quantize.convert_float(model, "float32")
    int8 = quantize.quantize_calibrated(quantize.calibrate(model, images, float_model=f32), io="int8")
    it = interpreter(int8)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    scale, zp = out["quantization"]
    errs = []
    ref = float_model.predict(images.astype(np.float32), verbose=0)
    for img, r in zip(images, ref):
        it.set_tensor(inp["index"], img[None])
        it.invoke()
        errs.append(np.abs((it.get_tensor(out["index"])[0].astype(np.float64) - zp) * scale - r).mean())
    return float(np.mean(errs))


def test_quiet_channels_quantize_finer_after_equalization(images):
    model = chain(quiet_gamma=0.004)
    copy, _ = cle.equalize(model, images, cle.EqualizeSettings(pairs=2))
    plain, equalized = int8_error(model, model, images), int8_error(copy, model, images)
    assert equalized < 0.5 * plain, (plain, equalized)  # measured: 0.0079 -> 0.0025


def test_ensemble_members_are_found_and_equalized_by_path(images):
    from cxredge.keras import keras

    inp = keras.Input((224, 224, 3), name="pixels")
    a, b = chain("a_"), chain("b_")
    a._name, b._name = "m0", "m1"  # noqa: SLF001 - two members of one ensemble need distinct names
    avg = keras.layers.Average(name="mean")([a(inp), b(inp)])
    ens = keras.Model(inp, avg)
    pairs = cle.find_pairs(ens)
    assert [(p.member, p.relu) for p in pairs] == [(("m0",), "a_c1_relu"), (("m0",), "a_dw_relu"),
                                                   (("m1",), "b_c1_relu"), (("m1",), "b_dw_relu")]
    copy, record = cle.equalize(ens, images, cle.EqualizeSettings(pairs=1))
    assert [(la["member"], la["relu"]) for la in record["layers"]] == [("m0", "a_c1_relu"), ("m1", "b_c1_relu")]
    x = images.astype(np.float32)
    np.testing.assert_allclose(copy.predict(x, verbose=0), ens.predict(x, verbose=0), atol=1e-5)


def test_a_network_that_is_not_a_chain_is_left_as_it_is(images):
    from cxredge.keras import keras

    inp = keras.Input((224, 224, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="c")(inp)
    y = keras.layers.ReLU(6.0, name="r")(x)
    z = keras.layers.Conv2D(4, 1, name="d")(y)
    model = keras.Model(inp, keras.layers.Add()([x, z]))
    assert cle.find_pairs(model) == []
    same, record = cle.equalize(model, images, cle.EqualizeSettings())
    assert same is model and record["pairs_equalized"] == 0
