"""Issue 22 causes 3, 5, 6, 10, 11, 17 and --threads: hostile or broken inputs end in one line naming the
file or option and exit 1, never a traceback, never a result built on a lie. Each test fails on main 5f9c4f2."""
from __future__ import annotations

import json
import os
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxredge.cli.main import app
from cxredge.errors import CxrError
from cxredge.io import sha256_file
from edge_fixtures import CLASSES, make_run, write_sidecar

runner = CliRunner()


def cli(*args):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    return res


def one_error(res, *words):
    """exit 1 and one `error:` line holding every word."""
    assert res.exit_code == 1, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, res.output
    text = " ".join(res.output.split())
    for w in words:
        assert str(w) in text, (w, res.output)
    return text


@pytest.fixture()
def run_dir(edge_models, tiny_data, tmp_path):
    return make_run(tmp_path / "run", edge_models, tiny_data)


def an_image(tiny_data) -> Path:
    return next((tiny_data / "test" / "alpha").glob("*.png"))


# --- cause 3: provenance is checked, not taken on trust -----------------------------------------

def test_foreign_model_beside_a_real_sidecar_is_refused(run_dir, edge_models, tiny_data, tmp_path):
    model = run_dir / "fc" / "int8.tflite"
    shutil.copy(edge_models["int8_i8out"], model)  # another model's bytes under fc/int8's sidecar
    img = an_image(tiny_data)
    for res in (cli("predict", model, img), cli("explain", model, img, "--out", tmp_path / "ex"),
                cli("bench", "--run", run_dir, "--runs", 1, "--warmup", 0, "--out", tmp_path / "b")):
        one_error(res, "int8.tflite", "int8.json", "sidecar")
    assert not (tmp_path / "b" / "bench.json").exists()


def test_truncated_model_is_refused_by_size(run_dir, tiny_data):
    model = run_dir / "fc" / "float32.tflite"
    model.write_bytes(model.read_bytes()[:-8])
    one_error(cli("predict", model, an_image(tiny_data)), "float32.tflite", "float32.json", "bytes")


def test_bench_records_the_hash_it_computed_and_report_compares_those(edge_models, tiny_data, tmp_path):
    """Bare models (--labels, no sidecar) under one name on two 'devices': bench.json carries each file's
    own sha256, so report flags the two as different models (main recorded null: 'the same models')."""
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(CLASSES) + "\n")
    docs = []
    for tag, src in (("a", edge_models["int8"]), ("b", edge_models["int8_i8out"])):
        (tmp_path / tag / "two_conv").mkdir(parents=True)
        model = tmp_path / tag / "two_conv" / "int8.tflite"
        shutil.copy(src, model)
        res = cli("bench", model, "--labels", labels, "--data", tiny_data, "--runs", 1, "--warmup", 0, "--ci", 0,
                  "--out", tmp_path / f"out_{tag}")
        assert res.exit_code == 0, res.output
        doc = json.loads((tmp_path / f"out_{tag}" / "bench.json").read_text())
        assert {r["sha256"] for r in doc["results"]} == {sha256_file(model)}
        doc["device"]["hostname"] = f"device-{tag}"  # as if benched on two machines
        (tmp_path / f"out_{tag}" / "bench.json").write_text(json.dumps(doc))
        docs.append(tmp_path / f"out_{tag}" / "bench.json")
    res = cli("report", "--bench", docs[0], "--bench", docs[1], "--out", tmp_path / "rep")
    assert res.exit_code == 0, res.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "model sha256 differs between devices" in md


# --- cause 5: decompression bombs and the pixel limit ------------------------------------------

def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (8-bit gray) with a token IDAT: what a bomb looks like
    before Pillow decodes a pixel."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [20000, 10000, 8000])  # Pillow's error, Pillow's warning, cxredge's 60 MP
def test_bomb_is_one_line_in_predict_explain_bench_and_skipped_by_audit(run_dir, tiny_data_copy, tmp_path, side):
    bomb = tiny_data_copy / "test" / "alpha" / "bomb.png"
    bomb.write_bytes(png_header(side, side))
    model = run_dir / "fc" / "int8.tflite"
    for res in (cli("predict", model, bomb), cli("explain", model, bomb, "--out", tmp_path / "ex")):
        one_error(res, "bomb.png")
    one_error(cli("bench", "--run", run_dir, "--data", tiny_data_copy, "--runs", 1, "--warmup", 0,
                  "--out", tmp_path / "b"), "bomb.png")
    one_error(cli("audit", tiny_data_copy, "--out", tmp_path / "a"), "bomb.png")
    res = cli("audit", tiny_data_copy, "--out", tmp_path / "a", "--skip-bad")
    assert res.exit_code == 0, res.output
    assert any("bomb.png" in u for u in json.loads((tmp_path / "a" / "audit.json").read_text())["unreadable"])


def test_pixel_limit_is_checked_before_decoding(tmp_path, monkeypatch):
    from cxredge.edge.data import images, limits

    monkeypatch.setattr(limits, "MAX_PIXELS", 300 * 300)  # the limit every decoder checks (edge/data/limits.py)
    ok, big = tmp_path / "ok.png", tmp_path / "big.png"
    Image.fromarray(np.zeros((300, 300), np.uint8)).save(ok)
    Image.fromarray(np.zeros((300, 301), np.uint8)).save(big)
    assert images.load_image(ok).shape == (224, 224, 3)
    with pytest.raises(CxrError, match="big.png: 301x300 pixels"):
        images.load_image(big)


def test_default_pixel_limit_refuses_a_real_64_megapixel_png(tmp_path):
    """A real 8000x8000 PNG (64 MP: under Pillow's 89 MP warning, so main decoded it, ~256 MB as RGB) is
    refused from its header by the 60 MP limit; a 10000x10000 header likewise."""
    from cxredge.edge.data.images import MAX_PIXELS, load_image

    assert 40_000_000 <= MAX_PIXELS <= 60_000_000
    path = tmp_path / "huge.png"
    Image.fromarray(np.zeros((8000, 8000), np.uint8)).save(path, compress_level=1)
    with pytest.raises(CxrError, match="huge.png: 8000x8000 pixels"):
        load_image(path)
    path.write_bytes(png_header(10000, 10000))
    with pytest.raises(CxrError, match="huge.png: refused, a decompression bomb"):  # Pillow's 89 MP warning, first
        load_image(path)


# --- cause 6: model input/output shapes ---------------------------------------------------------

@pytest.fixture(scope="module")
def odd_models(tmp_path_factory):
    """Tiny .tflite models whose input or output cxredge cannot (or now can) feed."""
    from cxredge.keras import keras, tf

    folder = tmp_path_factory.mktemp("odd_models")

    def convert(inp, head) -> Path:
        x = keras.Input(inp, batch_size=1)
        model = keras.Model(x, head(x))
        path = folder / f"m{len(list(folder.iterdir()))}.tflite"
        path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
        return path

    def pooled(n):
        return lambda x: keras.layers.Dense(n, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))

    return {
        "224x112": convert((224, 112, 3), pooled(4)),
        "1-D": convert((10,), lambda x: keras.layers.Dense(4, activation="softmax")(x)),
        "(1,2,4) out": convert((224, 224, 3), lambda x: keras.layers.Reshape((2, 4))(pooled(8)(x))),
        "3 outputs": convert((224, 224, 3), pooled(3)),
        "5 channels": convert((64, 64, 5), pooled(4)),
        "64x64x1": convert((64, 64, 1), pooled(4)),
    }


@pytest.mark.parametrize("kind,words", [("224x112", ["square"]), ("1-D", ["NHWC"]),
                                        ("(1,2,4) out", ["output shape [1, 2, 4]"]),
                                        ("3 outputs", ["3 outputs but 4 labels"]), ("5 channels", ["5 channels"])])
def test_model_shapes_are_checked_on_open(odd_models, tiny_data, tmp_path, kind, words):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(CLASSES))
    model = odd_models[kind]
    img = an_image(tiny_data)
    for res in (cli("predict", model, img, "--labels", labels),
                cli("explain", model, img, "--labels", labels, "--out", tmp_path / "ex")):
        one_error(res, model.name, *words)


def test_gray_input_model_is_fed_its_gray_channel(odd_models, tiny_data, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(CLASSES))
    res = cli("predict", odd_models["64x64x1"], an_image(tiny_data), "--labels", labels, "--json")
    assert res.exit_code == 0, res.output
    probs = json.loads(res.stdout)["predictions"][0]["probabilities"]
    assert list(probs) == CLASSES and abs(sum(probs.values()) - 1) < 1e-4


# --- cause 10: sidecars are validated ---------------------------------------------------------

@pytest.mark.parametrize("edit,words", [
    (lambda s: s.pop("labels"), ["labels", "list"]),
    (lambda s: s.update(labels=[1, 2, 3, 4]), ["labels[0]", "strings"]),
    (lambda s: s.update(labels="ABCD"), ["labels", "list"]),
    (lambda s: s.update(labels=["a", "b", "a", "c"]), ["labels", "'a' appears twice"]),
    (lambda s: s.update(labels=["a", "A", "b", "c"]), ["labels", "differ only by case"]),
    (lambda s: s.update(labels=["a", "", "b", "c"]), ["labels[1]", "empty"]),
    (lambda s: s.update(labels=["a", "b\nc", "d", "e"]), ["labels[1]", "control"]),
    (lambda s: s.pop("sha256"), ["sha256"]),
    (lambda s: s.update(size_bytes="12"), ["size_bytes"]),
    (lambda s: s.update(variant="../../x"), ["variant"]),
    (lambda s: s.update(ood=[1]), ["ood"]),
])
def test_bad_sidecar_is_one_line_naming_file_and_key(run_dir, tiny_data, tmp_path, edit, words):
    side_path = run_dir / "fc" / "int8.json"
    side = json.loads(side_path.read_text())
    edit(side)
    side_path.write_text(json.dumps(side))
    model = run_dir / "fc" / "int8.tflite"
    one_error(cli("predict", model, an_image(tiny_data)), "int8.json", *words)
    one_error(cli("bench", model, "--data", tiny_data, "--out", tmp_path / "b"), "int8.json", *words)


@pytest.mark.parametrize("text", ["[" * 100_000, '{"size_bytes": ' + "9" * 5000 + "}", "\ud800"])
def test_json_that_python_cannot_hold_is_one_line(tmp_path, text):
    """Nesting past the recursion limit, a 5000-digit integer: read_json's CxrError, not a traceback."""
    from cxredge.io import read_json

    path = tmp_path / "int8.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    with pytest.raises(CxrError, match="int8.json: not valid JSON"):
        read_json(path)


def test_label_files_are_checked_like_sidecars(tmp_path):
    from cxredge.edge.formats.sidecar import read_labels_file

    for text, word in (("a\nb\na\n", "twice"), ("a\n", "at least 2"), ("x\nX\n", "case")):
        (tmp_path / "l.txt").write_text(text)
        with pytest.raises(CxrError, match=word):
            read_labels_file(tmp_path / "l.txt")
    (tmp_path / "l.txt").write_bytes(b"\xff\xfe\x00a\n")
    with pytest.raises(CxrError, match="UTF-8"):
        read_labels_file(tmp_path / "l.txt")


# --- cause 11: bundle manifests ---------------------------------------------------------------

@pytest.fixture()
def good_bundle(run_dir, tmp_path) -> Path:
    out = tmp_path / "good.zip"
    assert cli("export", "--run", run_dir, "--out", out, "--variant", "fc").exit_code == 0
    return out


def rewrite(src: Path, dst: Path, manifest=None, extra: dict | None = None, drop=()) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename in drop:
                continue
            data = zin.read(info)
            if info.filename == "bundle.json" and manifest is not None:
                data = json.dumps(manifest(json.loads(data))).encode()
            zout.writestr(info, data)
        for name, data in (extra or {}).items():
            zout.writestr(name, data)
    return dst


@pytest.mark.parametrize("member", [".", "a/./b.txt", "a//b.txt", "x\\..\\evil.txt"])
def test_bundle_member_names_must_be_plain(good_bundle, tmp_path, member):
    bad = rewrite(good_bundle, tmp_path / "bad.zip", extra={member: b"x"})
    one_error(cli("bench", bad, "--out", tmp_path / "b"), "bad.zip", "unsafe member")


@pytest.mark.parametrize("models,words", [("fc/int8.tflite", ["models must be a list"]), ([1], ["models[0]"]),
                                          ([{"path": 3}], ["models[0].path"]),
                                          ([{"path": "fc/int8.tflite", "sha256": "x", "size_bytes": 1}],
                                           ["models[0].sha256"])])
def test_bundle_models_must_be_a_list_of_objects(good_bundle, tmp_path, models, words):
    bad = rewrite(good_bundle, tmp_path / "bad.zip", manifest=lambda m: {**m, "models": models})
    one_error(cli("bench", bad, "--out", tmp_path / "b"), "bad.zip", *words)
    one_error(cli("predict", bad, tmp_path), "bad.zip", *words)


def test_unlisted_tflite_member_is_refused(good_bundle, edge_models, tmp_path):
    extra = {"two_conv/int8.tflite": edge_models["int8"].read_bytes(),
             "two_conv/int8.json": b"{}"}
    bad = rewrite(good_bundle, tmp_path / "bad.zip", extra=extra)
    one_error(cli("bench", bad, "--out", tmp_path / "b"), "bad.zip",
              "two_conv/int8.tflite is not listed in bundle.json")


def test_every_bundle_member_is_hash_checked(good_bundle, tmp_path):
    listed = {f["path"] for f in json.loads(zipfile.ZipFile(good_bundle).read("bundle.json"))["files"]}
    assert {"labels.txt", "fc/int8.json", "fc/metrics.json", "run.json"} <= listed
    bad = rewrite(good_bundle, tmp_path / "bad.zip", drop=("fc/metrics.json",), extra={"fc/metrics.json": b"{}"})
    one_error(cli("bench", bad, "--out", tmp_path / "b"), "bad.zip", "fc/metrics.json does not match its sha256")
    bad = rewrite(good_bundle, tmp_path / "bad2.zip", extra={"notes.txt": b"x"})
    one_error(cli("bench", bad, "--out", tmp_path / "b"), "bad2.zip", "notes.txt is not listed in bundle.json")


def test_duplicate_member_is_refused(good_bundle, tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name it writes
        bad = rewrite(good_bundle, tmp_path / "bad.zip", extra={"fc/int8.tflite": b"TFL3 not the listed bytes"})
    one_error(cli("bench", bad, "--out", tmp_path / "b"), "bad.zip", "appears twice")


# --- cause 17: class folders differing only by case -----------------------------------------

def test_class_folders_differing_by_case_are_an_error(run_dir, tiny_data_copy, tmp_path):
    from cxredge.edge.data.dataset import scan, scan_eval

    (tmp_path / "case").mkdir()
    if (tmp_path / "CASE").exists():
        pytest.skip("this file system ignores case: COVID/ and covid/ cannot both exist here")
    shutil.copytree(tiny_data_copy / "test" / "alpha", tiny_data_copy / "test" / "ALPHA")
    with pytest.raises(CxrError, match="'ALPHA' and 'alpha' differ only by case"):
        scan_eval(tiny_data_copy / "test")
    for split in ("train", "val"):
        shutil.copytree(tiny_data_copy / split / "alpha", tiny_data_copy / split / "ALPHA")
    with pytest.raises(CxrError, match="differ only by case"):
        scan(tiny_data_copy)
    one_error(cli("bench", "--run", run_dir, "--data", tiny_data_copy / "test", "--out", tmp_path / "b"),
              "ALPHA", "differ only by case")


# --- --threads bounds ------------------------------------------------------------------------

def test_threads_are_bounded(run_dir, tiny_data, tmp_path):
    from cxredge.edge.runtime.interpreter import max_threads

    model, img, n = run_dir / "fc" / "int8.tflite", an_image(tiny_data), max_threads() + 1
    assert max_threads() == 4 * (os.cpu_count() or 1)
    one_error(cli("predict", model, img, "--threads", n), f"--threads {n}", "expected 1..")
    one_error(cli("explain", model, img, "--threads", n, "--out", tmp_path / "ex"), f"--threads {n}")
    one_error(cli("bench", "--run", run_dir, "--threads", f"1,{n}", "--out", tmp_path / "b"), f"--threads {n}")
    assert not (tmp_path / "b").exists()
    res = cli("predict", model, img, "--threads", max_threads())
    assert res.exit_code == 0, res.output


def test_sidecar_fixture_still_verifies(run_dir):
    """The fixtures' sidecars (tests/edge_fixtures.py) pass the checks: the checks refuse lies, not sidecars."""
    from cxredge.edge.formats.sidecar import read_sidecar

    for p in run_dir.glob("*/*.tflite"):
        assert read_sidecar(p)["sha256"] == sha256_file(p)
    write_sidecar(run_dir / "fc" / "int8.tflite", "fc", "int8")
