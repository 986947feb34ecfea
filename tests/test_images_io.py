"""The input contract (raw uint8 RGB 224x224x3 from any image) and atomic artifact writes."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cxredge.edge.data.images import load_image
from cxredge.errors import CxrError
from cxredge.io import atomic_path, read_json, write_json


def test_gray_png_becomes_three_equal_channels(tmp_path):
    gray = (np.arange(224 * 224) % 256).reshape(224, 224).astype(np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    x = load_image(tmp_path / "g.png")
    assert x.shape == (224, 224, 3) and x.dtype == np.uint8
    assert np.array_equal(x[..., 0], gray) and np.array_equal(x[..., 1], gray) and np.array_equal(x[..., 2], gray)


def test_any_size_colour_jpeg_is_resized(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (300, 420, 3), dtype=np.uint8)
    Image.fromarray(rgb, "RGB").save(tmp_path / "c.jpg", quality=95)
    x = load_image(tmp_path / "c.jpg")
    assert x.shape == (224, 224, 3) and x.dtype == np.uint8


def test_16bit_gray_is_scaled_to_full_8bit_range(tmp_path):
    arr = np.linspace(1000, 40000, 224 * 224).reshape(224, 224).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "d.png")
    x = load_image(tmp_path / "d.png")
    assert x.min() == 0 and x.max() == 255


def test_corrupt_image_error_names_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(CxrError, match="broken.png"):
        load_image(bad)


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"accuracy": 0.9})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("interrupted")
    assert read_json(target) == {"accuracy": 0.9}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_write_json_handles_numpy_values(tmp_path):
    write_json(tmp_path / "a.json", {"x": np.float32(0.5), "cm": np.eye(2, dtype=np.int64)})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 0.5, "cm": [[1, 0], [0, 1]]}


def test_read_json_error_names_the_file(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CxrError, match="bad.json"):
        read_json(tmp_path / "bad.json")
