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


def test_symmetric_kl_is_zero_only_for_equal_answers_and_symmetric():
    from cxredge.train.paired import symmetric_kl

    p = np.array([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5]], np.float32)
    q = np.array([[0.7, 0.2, 0.1], [0.5, 0.25, 0.25]], np.float32)
    pq, qp = symmetric_kl(p, q).numpy(), symmetric_kl(q, p).numpy()
    assert pq[0] == pytest.approx(0.0, abs=1e-6) and pq[1] > 0.1
    assert pq == pytest.approx(qp)


def test_paired_batches_keep_float_and_int8_of_the_same_view_together():
    from cxredge.train.fit import CachedBatches

    rng = np.random.default_rng(0)
    views = [rng.normal(size=(50, 3)).astype(np.float32) for _ in range(3)]
    pairs = [v + 1000.0 for v in views]
    batches = CachedBatches(views, np.arange(50) % 4, 4, 16, seed=1, pairs=pairs)
    seen_views = set()
    for i in range(len(batches)):
        (x, xq), y, w = batches[i]
        assert x.shape == xq.shape and len(y) == len(w) == len(x)
        np.testing.assert_allclose(xq - x, 1000.0)
        seen_views |= {v for v in range(3) for row in x if np.isclose(views[v], row).all(1).any()}
    assert seen_views == {0, 1, 2}  # every view gets drawn
    with pytest.raises(ValueError):
        CachedBatches(views, np.arange(50) % 4, 4, 16, seed=1, pairs=pairs[:2])


def _agreement_after_training(consistency: float) -> float:
    from cxredge.keras import keras
    from cxredge.train import fit as fitting
    from cxredge.train.paired import PairedTail

    fitting.set_determinism(0)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(256, 8)).astype(np.float32)
    b = (a + rng.normal(0, 1.0, a.shape)).astype(np.float32)  # a coarse "int8" copy of the features
    y = (a[:, 0] > 0).astype(int) * 2 + (a[:, 1] > 0).astype(int)
    inp = keras.Input((8,))
    tail = keras.Model(inp, keras.layers.Dense(4, activation="softmax")(keras.layers.Dense(16, activation="relu")(inp)))
    trainer = PairedTail(tail, consistency, label_smoothing=0.0)
    fitting.compile_model(trainer, 1e-2, 0.0)
    batches = CachedBatchesFactory(a, b, y)
    hist = trainer.fit(batches, epochs=25, verbose=0)
    assert set(hist.history) >= {"loss", "accuracy"}
    return float((tail.predict(a, verbose=0).argmax(1) == tail.predict(b, verbose=0).argmax(1)).mean())


def CachedBatchesFactory(a, b, y):  # noqa: N802 - reads like the class it builds
    from cxredge.train.fit import CachedBatches

    return CachedBatches([a], y, 4, 32, seed=0, pairs=[b])


def test_consistency_term_raises_float_int8_agreement():
    assert _agreement_after_training(20.0) > _agreement_after_training(0.0) + 0.03
