"""Calibration manifests: stratified seeded sampling, round trip, and each bad input's error. TF-free."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from cxredge.convert import calibration
from cxredge.edge.data.dataset import scan
from cxredge.errors import CxrError


def test_draw_is_stratified_seeded_and_train_only(tiny_data):
    ds = scan(tiny_data)
    m = calibration.draw(ds, 8, seed=0)
    assert m.size == 8
    assert Counter(rel.split("/")[1] for rel, _ in m.entries) == {c: 2 for c in ds.classes}
    assert all(rel.startswith("train/") for rel, _ in m.entries)
    assert calibration.draw(ds, 8, seed=0) == m
    assert calibration.draw(ds, 8, seed=1).entries != m.entries
    assert m.name == "train_n8_seed0"


def test_uneven_size_uses_largest_remainder(tiny_data):
    m = calibration.draw(scan(tiny_data), 6, seed=3)
    counts = Counter(rel.split("/")[1] for rel, _ in m.entries)
    assert sum(counts.values()) == 6 and max(counts.values()) - min(counts.values()) <= 1


def test_manifest_round_trip_and_images(tiny_data, tmp_path):
    ds = scan(tiny_data)
    m = calibration.draw(ds, 4, seed=0, dataset_sha256="abc")
    path = m.save(tmp_path / "m.txt")
    text = path.read_text()
    assert text.startswith("# cxredge-calibration/1\n# dataset: ")
    assert "# seed: 0" in text and "# size: 4" in text and "\t" in text.splitlines()[-1]
    back = calibration.read_manifest(path)
    assert back == m and back.sha256() == m.sha256()
    x = calibration.load_images(back, tiny_data, path)
    assert x.shape == (4, 224, 224, 3) and x.dtype == np.uint8


def test_size_larger_than_train_split(tiny_data):
    with pytest.raises(CxrError, match=r"--calibration-size 33: larger than the train split \(32"):
        calibration.draw(scan(tiny_data), 33, seed=0)


def test_missing_and_changed_images(tiny_data_copy, tmp_path):
    ds = scan(tiny_data_copy)
    m = calibration.draw(ds, 4, seed=0)
    rel = m.entries[0][0]
    (tiny_data_copy / rel).write_bytes((tiny_data_copy / rel).read_bytes() + b"\0")
    with pytest.raises(CxrError, match="has changed \\(sha256 mismatch\\)"):
        calibration.load_images(m, tiny_data_copy, "m.txt")
    (tiny_data_copy / rel).unlink()
    with pytest.raises(CxrError, match="is missing"):
        calibration.load_images(m, tiny_data_copy, "m.txt")


def test_bad_manifests(tiny_data, tmp_path):
    m = calibration.draw(scan(tiny_data), 4, seed=0)
    good = m.text()
    cases = {
        "no-header.txt": "\n".join(line for line in good.splitlines() if not line.startswith("# seed")),
        "bad-line.txt": good + "train/x.png\n",
        "wrong-size.txt": good.replace("# size: 4", "# size: 5"),
        "empty.txt": "\n".join(line for line in good.splitlines() if line.startswith("#")),
    }
    expected = {"no-header.txt": "header lacks seed", "bad-line.txt": "line 11",
                "wrong-size.txt": "header says size 5", "empty.txt": "lists no images"}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(CxrError, match=expected[name]):
            calibration.read_manifest(tmp_path / name)
    with pytest.raises(CxrError, match="file not found"):
        calibration.read_manifest(tmp_path / "nope.txt")


def test_classes_must_match(tiny_data):
    m = calibration.draw(scan(tiny_data), 4, seed=0)
    calibration.check_classes(m, m.classes, "m.txt")
    with pytest.raises(CxrError, match="do not match the run"):
        calibration.check_classes(m, ("a", "b"), "m.txt")


def test_input_range_anchor():
    x = np.full((2, 224, 224, 3), 100, dtype=np.uint8)
    anchor = calibration.input_range_anchor(x)
    assert anchor.min() == 0 and anchor.max() == 255
    assert (anchor[1:] == 100).all()  # only two pixels of the first row change
    x[0, 5, 5] = 0
    x[1, 6, 6] = 255
    assert calibration.input_range_anchor(x) is None
