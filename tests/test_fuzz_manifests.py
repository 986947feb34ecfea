"""Fuzz (Hypothesis) of the readers of model metadata from outside: sidecars (read_sidecar, against a model
file), bundle zips with random bundle.json and member names (open_bundle), and --labels files. Each ends in
a checked result or one CxrError, never another exception, and a bundle never writes outside its folder.

Budget: tests/fuzz.py (FUZZ examples per test; CXREDGE_FUZZ_EXAMPLES raises it)."""
from __future__ import annotations

import hashlib
import json
import tempfile
import zipfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from cxredge.edge.formats.bundle import BUNDLE_FORMAT, open_bundle
from cxredge.edge.formats.sidecar import SIDECAR_FORMAT, read_labels_file, read_sidecar
from cxredge.errors import CxrError
from fuzz import FUZZ

MODEL = b"\x1c\x00\x00\x00TFL3" + bytes(range(200))  # read_sidecar only hashes it
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
                    lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=10), c, max_size=5),
                    max_leaves=20)
LABEL = st.text(max_size=12)


def valid_sidecar() -> dict:
    return {"format": SIDECAR_FORMAT, "model": "int8.tflite", "variant": "two_conv", "precision": "int8",
            "labels": ["Bacterial", "COVID", "Normal", "Viral"], "sha256": hashlib.sha256(MODEL).hexdigest(),
            "size_bytes": len(MODEL), "input": {"shape": [1, 224, 224, 3]}, "output": {"shape": [1, 4]},
            "validation": {"n": 1}, "ood": None, "calibration": None}


@st.composite
def sidecars(draw):
    """A valid sidecar with some keys replaced by anything JSON holds, deleted, or labels drawn."""
    side = valid_sidecar()
    for key in draw(st.lists(st.sampled_from(sorted(side) + ["labels"] * 3), max_size=4)):
        what = draw(st.sampled_from(["json", "delete", "labels"]))
        if what == "delete":
            side.pop(key, None)
        elif what == "labels" or key == "labels":
            side["labels"] = draw(st.lists(LABEL, max_size=6))
        else:
            side[key] = draw(JSON)
    return side


def read_with(tmp_path: Path, text: str | bytes):
    model = tmp_path / "int8.tflite"
    model.write_bytes(MODEL)
    side = tmp_path / "int8.json"
    side.write_bytes(text if isinstance(text, bytes) else text.encode())
    try:
        out = read_sidecar(model)
    except CxrError as exc:
        assert "int8.json" in str(exc) and "\n" not in str(exc)
        return None
    labels = out["labels"]
    assert len(labels) >= 2 and len({x.casefold() for x in labels}) == len(labels)
    assert all(isinstance(x, str) and x.strip() == x and x for x in labels)
    assert out["sha256"] == hashlib.sha256(MODEL).hexdigest() and out["size_bytes"] == len(MODEL)
    return out


@FUZZ
@given(side=sidecars())
def test_fuzz_sidecar_fields(tmp_path, side):
    read_with(tmp_path, json.dumps(side))


@FUZZ
@given(doc=JSON)
def test_fuzz_sidecar_any_json(tmp_path, doc):
    assert read_with(tmp_path, json.dumps(doc)) is None  # never a cxredge sidecar


@FUZZ
@given(data=st.binary(max_size=512))
def test_fuzz_sidecar_any_bytes(tmp_path, data):
    read_with(tmp_path, data)


def test_unmutated_sidecar_reads(tmp_path):
    assert read_with(tmp_path, json.dumps(valid_sidecar()))["labels"][0] == "Bacterial"


# --- bundles ---------------------------------------------------------------------------------------

NAME_PART = st.lists(st.sampled_from(list("ab.:\\ -_") + ["..", "/", "\x00", "\u00e9", ".tflite"]),
                     min_size=1, max_size=8).map("".join).filter(lambda n: not n.startswith("\x00"))
# (zipfile itself cannot write a name that starts with NUL: it cuts names at the first NUL)


def valid_manifest() -> dict:
    return {"format": BUNDLE_FORMAT, "classes": ["a", "b"], "test_images": 0, "run": None,
            "models": [{"path": "fc/int8.tflite", "sha256": hashlib.sha256(MODEL).hexdigest(),
                        "size_bytes": len(MODEL)}]}


@st.composite
def bundles(draw):
    """(bundle.json bytes, {member: bytes}): the valid layout with the manifest's keys, or its model
    entries, replaced by anything, and extra members with names drawn from the troublesome characters."""
    manifest = valid_manifest()
    for key in draw(st.lists(st.sampled_from(["format", "models", "classes", "models.0", "models.0.path",
                                              "models.0.sha256", "models.0.size_bytes"]), max_size=3)):
        value = draw(JSON | st.sampled_from(["fc/int8.tflite", ".", "../x.tflite", "/abs.tflite"]))
        if key.startswith("models.0") and isinstance(manifest["models"], list) and manifest["models"] \
                and isinstance(manifest["models"][0], dict):
            if key == "models.0":
                manifest["models"][0] = value
            else:
                manifest["models"][0][key.split(".")[-1]] = value
        elif not key.startswith("models."):
            manifest[key] = value
    members = {"fc/int8.tflite": MODEL, "labels.txt": b"a\nb\n"}
    for _ in range(draw(st.integers(0, 3))):
        members[draw(NAME_PART)] = draw(st.binary(max_size=16))
    raw = json.dumps(manifest).encode() if draw(st.booleans()) else draw(st.binary(max_size=64))
    return raw, members


@FUZZ
@given(case=bundles())
def test_fuzz_bundle_manifest_and_members(case):
    raw, members = case
    with tempfile.TemporaryDirectory() as tmp:
        sandbox = Path(tmp)
        zpath, dest = sandbox / "b.zip", sandbox / "dest"
        with zipfile.ZipFile(zpath, "w") as zf:
            zf.writestr("bundle.json", raw)
            for name, data in members.items():
                zf.writestr(name, data)
        dest.mkdir()
        try:
            manifest = open_bundle(zpath, dest)
        except CxrError as exc:
            assert str(exc).startswith(str(zpath)) and "\n" not in str(exc)
        else:
            assert isinstance(manifest["models"], list)
            for m in manifest["models"]:
                f = dest / m["path"]
                assert f.is_file() and hashlib.sha256(f.read_bytes()).hexdigest() == m["sha256"]
        assert sorted(p.name for p in sandbox.iterdir()) == ["b.zip", "dest"]  # nothing written beside dest


@FUZZ
@given(data=st.binary(max_size=2048))
def test_fuzz_bundle_random_bytes(tmp_path, data):
    zpath = tmp_path / "b.zip"
    zpath.write_bytes(b"PK\x03\x04" + data)
    with tempfile.TemporaryDirectory() as dest:
        try:
            open_bundle(zpath, Path(dest))
        except CxrError as exc:
            assert "b.zip" in str(exc)


def test_unmutated_bundle_opens(tmp_path):
    zpath = tmp_path / "b.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("bundle.json", json.dumps(valid_manifest()))
        zf.writestr("fc/int8.tflite", MODEL)
    assert open_bundle(zpath, tmp_path / "dest")["models"][0]["path"] == "fc/int8.tflite"


# --- --labels files ---------------------------------------------------------------------------

@FUZZ
@given(data=st.binary(max_size=256) | st.text(max_size=64).map(str.encode)
       | st.lists(LABEL, max_size=6).map(lambda x: "\n".join(x).encode()),
       suffix=st.sampled_from([".txt", ".json"]))
def test_fuzz_labels_file(tmp_path, data, suffix):
    path = tmp_path / f"labels{suffix}"
    path.write_bytes(data)
    try:
        labels = read_labels_file(path)
    except CxrError as exc:
        assert f"labels{suffix}" in str(exc) and "\n" not in str(exc)
    else:
        assert len(labels) >= 2 and len({x.casefold() for x in labels}) == len(labels)
