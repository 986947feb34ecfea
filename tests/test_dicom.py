"""The DICOM decoder (cxredge/edge/data/dicom.py) on files made with pydicom from real chest X-rays
(dicom_fixtures.py)."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from dicom_fixtures import CLASSES, real_png, twelve_bit, write_dicom
from PIL import Image

from cxredge.edge.data import dicom
from cxredge.edge.data.images import load_image
from cxredge.errors import CxrError

pytest.importorskip("pydicom")


def png_pixels(tmp_path, gray):
    path = tmp_path / "ref.png"
    Image.fromarray(gray, "L").save(path)
    return load_image(path)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_8bit_monochrome_1_and_2_give_the_png_pixels(tmp_path, photometric):
    g = real_png("COVID")
    stored = g if photometric == "MONOCHROME2" else 255 - g
    path = write_dicom(tmp_path / "a.dcm", stored, photometric=photometric, window=(128, 256))
    assert np.array_equal(load_image(path), png_pixels(tmp_path, g))  # the same 224x224 resize too
    assert dicom.read_facts(path).photometric == photometric


@pytest.mark.parametrize("syntax", ["explicit", "rle", "j2k", "jpegll"])
def test_12_bit_monochrome1_rescale_and_window_maps_back_exactly(tmp_path, syntax):
    g = real_png("Viral_Pneumonia")
    stored, kw = twelve_bit(g)
    path = write_dicom(tmp_path / f"{syntax}.dcm", stored, syntax=syntax, **kw)
    pixels, facts = dicom.decode(path)
    assert np.array_equal(pixels, g)
    assert (facts.bits_stored, facts.photometric, facts.voi, facts.view_position) == (12, "MONOCHROME1", "window", "PA")
    assert {"explicit": "Explicit", "rle": "RLE", "j2k": "JPEG 2000", "jpegll": "JPEG Lossless"}[syntax] \
        in facts.transfer_syntax


def test_every_gray_level_survives_the_12_bit_window(tmp_path):
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    stored, kw = twelve_bit(levels)
    assert np.array_equal(dicom.decode(write_dicom(tmp_path / "l.dcm", stored, **kw))[0], levels)


def test_ignoring_the_rescale_slope_would_be_seen(tmp_path):
    """The slope matters: without it the window clips. Proves the Modality LUT is applied, not skipped."""
    g = real_png("Normal")
    stored, kw = twelve_bit(g)
    wrong = write_dicom(tmp_path / "w.dcm", stored, **{**kw, "slope": 1.0, "intercept": 0.0})
    assert not np.array_equal(dicom.decode(wrong)[0], g)


def test_signed_16_bit_with_negative_values(tmp_path):
    g = real_png("Bacterial_Pneumonia")
    stored = (16 * g.astype(np.int32) - 2040).astype(np.int16)  # m = 16 v - 2040: negatives below v = 128
    assert stored.min() < 0
    path = write_dicom(tmp_path / "s.dcm", stored, window=(0.5, 4081))
    assert np.array_equal(dicom.decode(path)[0], g)


def test_missing_window_falls_back_to_min_max_inside_the_padding(tmp_path):
    g = real_png("Normal").astype(np.int64)
    stored = (100 + 10 * g).astype(np.uint16)
    stored[:, :12] = 4000  # padding: brighter than any pixel, would squeeze the image if it counted
    path = write_dicom(tmp_path / "p.dcm", stored, bits_stored=12, padding=4000)
    pixels, facts = dicom.decode(path)
    inner = g[:, 12:]
    expect = np.rint((inner - inner.min()) * 255.0 / (inner.max() - inner.min()))
    assert facts.voi == "min-max"
    assert np.array_equal(pixels[:, 12:], expect)
    assert (pixels[:, :12] == 0).all()


def test_first_of_several_windows_and_a_voi_lut_sequence(tmp_path):
    g = real_png("COVID")
    several = write_dicom(tmp_path / "w2.dcm", g, window=([128, 30], [256, 10]))
    assert np.array_equal(dicom.decode(several)[0], g)
    lut = write_dicom(tmp_path / "lut.dcm", g, voi_lut=([256, 0, 8], [255 - i for i in range(256)]),
                      window=(30, 10))  # the LUT sequence wins over the window
    pixels, facts = dicom.decode(lut)
    assert facts.voi == "voi-lut"
    assert np.array_equal(pixels, 255 - g)


def test_extensionless_dicom_is_found_by_its_preamble(tmp_path):
    g = real_png("COVID")
    path = write_dicom(tmp_path / "IM0001", g, window=(128, 256))
    assert dicom.is_dicom(path)
    assert np.array_equal(load_image(path), png_pixels(tmp_path, g))


@pytest.mark.parametrize("case, message", [
    ("multiframe", "multi-frame DICOM (3 frames)"),
    ("ct", "modality CT is not a radiograph"),
    ("sr", "has no image"),
    ("palette", "PALETTE COLOR is not supported"),
])
def test_refusals_name_the_file(tmp_path, case, message):
    g = real_png("Normal")
    if case == "multiframe":
        path = write_dicom(tmp_path / "mf.dcm", np.stack([g, g, g]))
    elif case == "ct":
        path = write_dicom(tmp_path / "ct.dcm", (g.astype(np.int16) * 8 - 1024), modality="CT",
                           sop_class="1.2.840.10008.5.1.4.1.1.2", slope=1.0, intercept=0.0)
    elif case == "palette":
        path = write_dicom(tmp_path / "pal.dcm", g, photometric="PALETTE COLOR")
    else:
        path = write_dicom(tmp_path / "sr.dcm", g, sop_class="1.2.840.10008.5.1.4.1.1.88.11")
        import pydicom

        ds = pydicom.dcmread(path)
        del ds.PixelData
        ds.save_as(path)
    with pytest.raises(CxrError) as err:
        load_image(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_any_modality_lets_a_ct_through(tmp_path, monkeypatch):
    g = real_png("Normal")
    path = write_dicom(tmp_path / "ct.dcm", g.astype(np.int16) * 8 - 1024, modality="CT", window=(0, 2048))
    with pytest.raises(CxrError, match="--any-modality"):
        load_image(path)
    dicom.allow_any_modality(True)
    try:
        assert load_image(path).shape == (224, 224, 3)
    finally:
        dicom.allow_any_modality(False)
    monkeypatch.setenv("CXREDGE_ANY_MODALITY", "1")
    assert load_image(path).shape == (224, 224, 3)


def test_missing_decoder_plugin_is_named(tmp_path, monkeypatch):
    g = real_png("Normal")
    stored, kw = twelve_bit(g)
    path = write_dicom(tmp_path / "j2k.dcm", stored, syntax="j2k", **kw)
    import pydicom.pixels

    class Unavailable:
        is_available = False

    monkeypatch.setattr(pydicom.pixels, "get_decoder", lambda uid: Unavailable())
    with pytest.raises(CxrError, match=r"JPEG 2000 .*needs a decoder plugin: pip install pylibjpeg-openjpeg"):
        load_image(path)


def test_missing_pydicom_names_the_extra(tmp_path, monkeypatch):
    path = write_dicom(tmp_path / "a.dcm", real_png("Normal"))
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(CxrError, match=r"pip install 'cxredge\[dicom\]'"):
        load_image(path)


def test_truncated_dicom_is_one_line_naming_the_file(tmp_path):
    path = write_dicom(tmp_path / "t.dcm", real_png("Normal"))
    path.write_bytes(path.read_bytes()[:400])
    with pytest.raises(CxrError, match=str(path)):
        load_image(path)


class Recorder:
    """Stands in for the interpreter in cxredge predict: keeps the pixels it is handed."""
    image_size = 224

    def __init__(self):
        self.seen = []

    def set_input(self, pixels):
        self.seen.append(pixels.copy())

    def invoke(self):
        pass

    def output(self):
        return np.full((1, 4), 0.25, dtype=np.float32)

    raw_output = output


def test_train_and_predict_see_identical_pixels(tmp_path):
    """One DICOM class-folder dataset: train's decoder (train/data.py) and predict's (cli/predict.py) agree."""
    from cxredge.cli.predict import classify
    from cxredge.train.data import load_data

    root = tmp_path / "data"
    files = []
    for label, cls in enumerate(CLASSES):
        for split in ("train", "val", "test"):
            (root / split / cls).mkdir(parents=True)
            stored, kw = twelve_bit(real_png(cls))
            files.append(write_dicom(root / split / cls / f"{cls}.dcm", stored, syntax="j2k", **kw))
    data = load_data(root)
    test = data.splits["test"]
    rec = Recorder()
    results, bad = classify(rec, list(test.paths), list(CLASSES))
    assert not bad and len(rec.seen) == len(test.paths) == 4
    train_x = np.concatenate(list(test.stream(2)))  # the pixels training streams (edge/data/stream.py)
    assert all(np.array_equal(a, b) for a, b in zip(rec.seen, train_x))
    assert train_x.std() > 10  # real pixels, not a blank image twice
    assert results[0]["dicom"] == {"view_position": "PA", "photometric": "MONOCHROME1", "bits_stored": 12,
                                   "voi": "window"}  # the per-image record predict gives
    summary = data.dataset.describe()["dicom"]  # and run.json's
    assert summary["files"] == 12 and summary["bits_stored"] == {"12": 12} and summary["view_position"] == {"PA": 12}
    assert "JPEG 2000 Image Compression (Lossless Only)" in summary["transfer_syntax"]



@pytest.mark.parametrize("function", ["LINEAR_EXACT", "SIGMOID"])
def test_voi_lut_functions_follow_the_standard(tmp_path, function):
    """PS3.3 C.11.2.1.3: LINEAR_EXACT y = (x - c) / w + 0.5; SIGMOID y = 1 / (1 + exp(-4 (x - c) / w))."""
    ramp = np.arange(0, 4096, 16, dtype=np.uint16).reshape(16, 16)
    path = write_dicom(tmp_path / "f.dcm", ramp, bits_stored=12, window=(2000, 1500), voi_function=function)
    x = ramp.astype(np.float64)
    y = (x - 2000) / 1500 + 0.5 if function == "LINEAR_EXACT" else 1 / (1 + np.exp(-4 * (x - 2000) / 1500))
    assert np.array_equal(dicom.decode(path)[0], np.rint(np.clip(y, 0, 1) * 255).astype(np.uint8))


def test_predict_lists_dicom_files_in_folders_with_or_without_suffix(tmp_path):
    from cxredge.cli.predict import expand_images

    g = real_png("Normal")
    (tmp_path / "series").mkdir()
    a = write_dicom(tmp_path / "series" / "IM0001", g)
    b = write_dicom(tmp_path / "series" / "b.dcm", g)
    (tmp_path / "series" / "notes.txt").write_text("not an image")
    assert expand_images([tmp_path]) == sorted([a, b])


def test_modality_lut_sequence_is_applied(tmp_path):
    """A Modality LUT Sequence (v -> 16 v + 8) instead of a rescale; the window only fits its output."""
    g = real_png("COVID")
    lut = [16 * v + 8 for v in range(256)]
    path = write_dicom(tmp_path / "m.dcm", g, modality_lut=lut, window=(2048.5, 4081))
    assert np.array_equal(dicom.decode(path)[0], g)


def test_rgb_secondary_capture_keeps_its_colours(tmp_path):
    """An OT secondary capture in RGB (a screenshot-like export) is read as RGB, no grayscale pipeline."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    rgb = np.stack([real_png("Normal"), real_png("COVID"), 255 - real_png("Normal")], axis=-1)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.set_pixel_data(rgb, "RGB", 8)
    path = tmp_path / "sc.dcm"
    ds.save_as(path, enforce_file_format=True)
    pixels, facts = dicom.decode(path)
    assert np.array_equal(pixels, rgb) and facts.voi == "none (RGB)"


def test_audit_flags_view_position_as_a_shortcut(tmp_path):
    """AP films for one class, PA for the other (the classic confound: AP = bedside = sicker): the audit
    names View Position as the file fact that tells the classes apart."""
    from conftest import invoke, read

    rng = np.random.default_rng(0)
    for cls, view in (("sick", "AP"), ("well", "PA")):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(24):
            noisy = np.clip(real_png("Normal").astype(int) + rng.integers(-20, 21, (128, 128)), 0, 255)
            write_dicom(tmp_path / "data" / cls / f"{i}.dcm", noisy.astype(np.uint8), view=view, window=(128, 256))
    result = invoke("audit", tmp_path / "data", "--out", tmp_path / "audit", "--folds", "2")
    assert result.exit_code == 0, result.output
    audit = read(tmp_path / "audit" / "audit.json")
    cues = {w.get("fact") or w["message"] for w in audit["warnings"] if w["kind"] != "patient_leak"}
    assert any("view position" in c for c in cues), audit["warnings"]
    assert audit["formats"]["sick"] == {"DICOM": 24}


def test_dicom_decoding_and_tables_need_no_tensorflow(tmp_path):
    """The device side: decoding a JPEG 2000 DICOM and scanning a label table with TensorFlow blocked."""
    from tf_blocker import run_blocked

    stored, kw = twelve_bit(real_png("Normal"))
    write_dicom(tmp_path / "a.dcm", stored, syntax="j2k", **kw)
    code = ("from cxredge.edge.data.images import load_image; from cxredge.edge.data import table, patients, dataset; "
            "print(load_image('a.dcm').shape)")
    res = run_blocked(tmp_path, "-c", code)
    assert res.returncode == 0 and "(224, 224, 3)" in res.stdout, res.stderr
