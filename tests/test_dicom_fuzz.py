"""Fuzz the DICOM reader (cxredge/edge/data/dicom.py) with damaged files: whatever the bytes, `load_image` returns a
224x224x3 image or raises CxrError naming the file in one line; never another exception, never a warning."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from dicom_fixtures import real_png, twelve_bit, write_dicom
from hypothesis import given
from hypothesis import strategies as st

from cxredge.edge.data.images import load_image
from cxredge.errors import CxrError
from fuzz import FUZZ

pytest.importorskip("pydicom")
SYNTAXES = ("explicit", "rle", "j2k", "jpegll")


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dicom_fuzz")
    stored, kw = twelve_bit(real_png("Normal")[:32, :32])
    return {s: write_dicom(folder / f"{s}.dcm", stored, syntax=s, phi={"PatientID": "P1"}, **kw).read_bytes()
            for s in SYNTAXES}


def check(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydicom's warnings must not reach the user's console
        try:
            img = load_image(path)
        except CxrError as exc:
            assert str(exc).startswith(str(path)) and "\n" not in str(exc) and len(str(exc)) < len(str(path)) + 300
        else:
            assert img.shape == (224, 224, 3) and img.dtype == np.uint8


@FUZZ
@given(syntax=st.sampled_from(SYNTAXES), edits=st.lists(st.tuples(st.integers(128, 10**6), st.integers(0, 255)),
                                                         min_size=1, max_size=8),
       cut=st.one_of(st.none(), st.integers(132, 10**6)))
def test_damaged_dicom_is_an_image_or_one_line(tmp_path_factory, originals, syntax, edits, cut):
    data = bytearray(originals[syntax])
    for pos, value in edits:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[:cut % len(data)]
    path = tmp_path_factory.mktemp("f") / "x.dcm"
    path.write_bytes(bytes(data))
    check(path)


def test_huge_declared_size_is_refused_before_decoding(tmp_path):
    import pydicom

    path = write_dicom(tmp_path / "big.dcm", real_png("Normal"))
    ds = pydicom.dcmread(path)
    ds.Rows = ds.Columns = 65535
    ds.save_as(path)
    with pytest.raises(CxrError, match="65535 x 65535 pixels is larger than cxredge reads"):
        load_image(path)
