"""int8-aware training's building block: the frozen extractor as a full-integer model, read back."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cxredge.keras")

from cxredge.convert.opcheck import float_ops  # noqa: E402
from cxredge.train.cache import compute_features, feature_extractor  # noqa: E402
from cxredge.train.int8_views import Int8Cuts, as_pixels, int8_extractor  # noqa: E402
from cxredge.train.variants import build_model  # noqa: E402
from conftest import synth_image  # noqa: E402


@pytest.fixture(scope="module")
def images():
    return np.stack([np.repeat(synth_image(i % 4, i)[..., None], 3, axis=2) for i in range(12)])


def test_int8_cuts_follow_the_float_cuts_in_the_extractor_order(images):
    from cxredge.paths import BUNDLED_WEIGHTS

    model = build_model("fc", 4, 0.75, str(BUNDLED_WEIGHTS))
    names = ["reshape_2", "conv_dw_13_relu"]  # fc's and two_conv's cuts: (1000,) and (7, 7, 576)
    extractor = feature_extractor(model, names)
    data = int8_extractor(extractor, images[:8])
    assert not float_ops(data), "the int8 extractor must be full-integer"
    floats = compute_features(extractor, images)
    seen = []
    quantized = Int8Cuts(data, extractor)(images, seen.append)
    assert len(seen) == len(images)
    for f, q in zip(floats, quantized):
        assert q.shape == f.shape and q.dtype == np.float32
        rel = np.linalg.norm(q - f) / np.linalg.norm(f)
        assert 0 < rel < 0.5, rel  # int8 differs, but it is the same feature of the same image


def test_as_pixels_rounds_and_clips():
    x = np.array([-3.0, 0.4, 0.6, 254.5, 300.0], np.float32)
    assert as_pixels(x).tolist() == [0, 0, 1, 254, 255]
    assert as_pixels(x).dtype == np.uint8
