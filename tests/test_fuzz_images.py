"""Fuzz (Hypothesis) of the image decoders: random bytes, and real PNG / JPEG / BMP / TIFF files truncated or
mutated, through the model-input decoder (load_image: predict, bench, explain, train) and audit's native
decoder (facts.read_image). Each ends in a result of the promised shape or one CxrError naming the file.

Budget: tests/fuzz.py (FUZZ examples per test; CXREDGE_FUZZ_EXAMPLES raises it)."""
from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from cxredge.edge.audit.facts import read_image
from cxredge.edge.data.images import load_image
from cxredge.errors import CxrError
from fuzz import FUZZ

FORMATS = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "TIFF": ".tif"}
MODES = ("L", "RGB", "I;16", "P", "LA", "RGBA", "1")


@st.composite
def real_image(draw) -> tuple[bytes, str]:
    """A small real image file (format, mode, size drawn), as bytes, and its suffix."""
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    mode = draw(st.sampled_from(MODES))
    if fmt == "JPEG" and mode not in ("L", "RGB"):
        mode = "L"
    if fmt == "BMP" and mode in ("I;16", "LA", "RGBA"):
        mode = "RGB"
    w, h = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    seed = draw(st.integers(0, 2**16))
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 4)).astype(np.uint8)
    if mode == "I;16":
        im = Image.fromarray(arr[..., 0].astype(np.uint16) * 257)  # mode I;16
    else:
        im = Image.fromarray(arr, "RGBA").convert(mode)
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue(), FORMATS[fmt]


@st.composite
def mutated(draw) -> tuple[bytes, str]:
    data, suffix = draw(real_image())
    data = bytearray(data)
    how = draw(st.sampled_from(["truncate", "flip", "insert", "header-size", "none"]))
    if how == "truncate":
        data = data[:draw(st.integers(0, max(0, len(data) - 1)))]
    elif how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
    elif how == "insert":
        i = draw(st.integers(0, len(data)))
        data[i:i] = draw(st.binary(min_size=1, max_size=64))
    elif how == "header-size" and suffix == ".png" and len(data) > 24:
        data[16:24] = draw(st.binary(min_size=8, max_size=8))  # IHDR width and height: any 32-bit values
    return bytes(data), suffix


def check_decoders(tmp_path, data: bytes, suffix: str) -> None:
    path = tmp_path / f"x{suffix}"
    path.write_bytes(data)
    try:
        x = load_image(path)
    except CxrError as exc:
        assert "x" + suffix in str(exc) and "\n" not in str(exc)
    else:
        assert x.shape == (224, 224, 3) and x.dtype == np.uint8
    try:
        facts, native, work = read_image(path)
    except CxrError as exc:
        assert "x" + suffix in str(exc) and "\n" not in str(exc)
    else:
        assert native.ndim == 2 and native.dtype == np.uint8 and (facts.width, facts.height) == native.shape[::-1]


@FUZZ
@given(data=st.binary(max_size=4096), suffix=st.sampled_from([".png", ".jpg", ".bmp", ".tif"]))
def test_fuzz_random_bytes_decode_or_cxrerror(tmp_path, data, suffix):
    check_decoders(tmp_path, data, suffix)


@FUZZ
@given(case=mutated())
def test_fuzz_mutated_real_images_decode_or_cxrerror(tmp_path, case):
    check_decoders(tmp_path, *case)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_generated_format_decodes_unmutated(tmp_path, fmt):
    """The fuzz starts from files the decoder does read (so 'CxrError' is not all it ever sees)."""
    im = Image.fromarray(np.arange(48 * 40, dtype=np.uint32).reshape(40, 48).astype(np.uint8), "L")
    buf = io.BytesIO()
    im.save(buf, fmt)
    (tmp_path / f"x{FORMATS[fmt]}").write_bytes(buf.getvalue())
    assert load_image(tmp_path / f"x{FORMATS[fmt]}").shape == (224, 224, 3)
