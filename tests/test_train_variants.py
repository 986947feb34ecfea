"""The model contract at the builder level: pinned sizes, cut points, the tail shares the full model's weights."""
from __future__ import annotations

import numpy as np
import pytest

from cxredge.errors import CxrError

keras_mod = pytest.importorskip("cxredge.keras")
from cxredge.train.augment import view_transform  # noqa: E402
from cxredge.train.cache import compute_features, cut_layer_name, feature_extractor, predict, tail_model  # noqa: E402
from cxredge.train.variants import build_model, count_params, set_trainable  # noqa: E402

EXPECTED_TRAINABLE = {"fc": 1_551_876, "one_conv": 2_576_876, "two_conv": 3_627_500}
EXPECTED_CUT = {"fc": "reshape_2", "one_conv": "dropout", "two_conv": "conv_dw_13_relu"}


@pytest.fixture(scope="module")
def alpha1_model():
    return build_model("fc", 4, alpha=1.0, weights=None)


@pytest.mark.parametrize("variant", ["fc", "one_conv", "two_conv"])
def test_alpha1_param_counts_are_pinned(alpha1_model, variant):
    set_trainable(alpha1_model, variant)
    total, trainable = count_params(alpha1_model)
    assert total == 5_805_740
    assert trainable == EXPECTED_TRAINABLE[variant]
    assert cut_layer_name(alpha1_model) == EXPECTED_CUT[variant]


def test_finetune_unfreezes_more_than_two_conv(alpha1_model):
    set_trainable(alpha1_model, "finetune", unfreeze_blocks=2)
    _, trainable = count_params(alpha1_model)
    assert trainable > EXPECTED_TRAINABLE["two_conv"]
    with pytest.raises(CxrError, match="--unfreeze-blocks 0"):
        set_trainable(alpha1_model, "finetune", unfreeze_blocks=0)


@pytest.mark.parametrize("variant", ["fc", "one_conv", "two_conv"])
def test_tail_on_cached_features_equals_full_model(variant):
    model = build_model(variant, 3, alpha=0.25, weights=None, dropout=0.3)
    cut = cut_layer_name(model)
    images = np.random.default_rng(0).integers(0, 256, (5, 224, 224, 3), dtype=np.uint8)
    feats, = compute_features(feature_extractor(model, [cut]), images, batch_size=2)
    tail = tail_model(model, cut)
    assert {id(w) for w in tail.trainable_weights} <= {id(w) for w in model.weights}  # shared, not copied
    full = predict(model, images)
    np.testing.assert_allclose(predict(tail, feats), full, atol=1e-5)
    np.testing.assert_allclose(full.sum(axis=1), 1.0, atol=1e-5)
    # mirrored features are the features of the mirrored image
    flipped, = compute_features(feature_extractor(model, [cut]), images, batch_size=2, transform=view_transform(1, 0))
    np.testing.assert_allclose(predict(tail, flipped), predict(model, images[:, :, ::-1, :]), atol=1e-5)


def test_pixel_noise_views_are_seeded_and_have_the_asked_spread():
    images = np.full((3, 224, 224, 3), 128, dtype=np.uint8)
    images[:, :, :112] = 40  # left half darker: the mirrored view must show it on the right
    clean = view_transform(1, 0)(images, 0)
    noisy = view_transform(1, 0, noise=2.0)(images, 0)
    again = view_transform(1, 0, noise=2.0)(images, 0)
    np.testing.assert_array_equal(noisy, again)  # same seed, same batch start -> same noise
    assert not np.array_equal(noisy, view_transform(1, 0, noise=2.0)(images, 32))  # next batch, new draw
    diff = noisy - clean
    assert abs(float(diff.std()) - 2.0) < 0.05 and abs(float(diff.mean())) < 0.05
    assert clean[0, 0, -1, 0] == 40 and noisy.min() >= 0.0 and noisy.max() <= 255.0
    assert view_transform(0, 0, noise=2.0) is None  # the original view stays clean
    augmented = view_transform(2, 0, noise=2.0)(images, 0)
    assert augmented.shape == images.shape and augmented.dtype == np.float32
