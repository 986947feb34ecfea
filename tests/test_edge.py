"""Edge side: TF-free boundary, metrics vs scikit-learn, (de)quantization, predict, bad input."""
from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cxredge.cli.main import app
from conftest import make_dataset
from edge_fixtures import CLASSES, make_run
from tf_blocker import run_blocked

runner = CliRunner()
@pytest.fixture(scope="module")
def run_dir(edge_models, tiny_data, tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("edge_run"), edge_models, tiny_data)


# --- the boundary -------------------------------------------------------------------------------

def test_blocker_really_blocks_tensorflow(tmp_path):
    res = run_blocked(tmp_path, "-c", "import tensorflow")
    assert res.returncode != 0 and "blocked by the cxredge boundary test" in res.stderr


def test_edge_modules_import_without_tensorflow(tmp_path):
    code = textwrap.dedent("""
        import importlib, pkgutil, sys
        import cxredge.edge
        import cxredge.remote
        names = [m.name for m in pkgutil.walk_packages(cxredge.edge.__path__, "cxredge.edge.")]
        names += [m.name for m in pkgutil.iter_modules(cxredge.remote.__path__, "cxredge.remote.")]
        names += ["cxredge.cli.bench", "cxredge.cli.bench_remote", "cxredge.cli.predict", "cxredge.cli.export",
                  "cxredge.cli.report", "cxredge.cli.main", "cxredge.cli.audit", "cxredge.cli.explain",
                  "cxredge.train.audit_step",
                  "cxredge.edge.ood.guard", "cxredge.edge.ood.flags"]
        import cxredge.edge.audit
        names += [m.name for m in pkgutil.iter_modules(cxredge.edge.audit.__path__, "cxredge.edge.audit.")]
        for n in names:
            importlib.import_module(n)
        bad = sorted(k for k in sys.modules if k.split(".")[0] in ("tensorflow", "tf_keras", "keras"))
        print(len(names), "modules;", "tf modules:", bad)
        assert not bad, bad
    """)
    res = run_blocked(tmp_path, "-c", code)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout.split()[0]) >= 10  # bench, bundle, dataset, device, images, metrics, ... + CLIs


def test_bench_and_predict_run_with_tensorflow_blocked(tmp_path, run_dir, tiny_data):
    out = tmp_path / "out"
    res = run_blocked(tmp_path, "-m", "cxredge", "bench", "--run", str(run_dir), "--runs", "3", "--warmup", "1",
                      "--out", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads((out / "bench.json").read_text())
    assert doc["device"]["runtime"] == "ai_edge_litert" and doc["device"]["runtime_version"]
    assert all(r["status"] == "ok" for r in doc["results"]) and len(doc["results"]) == 4
    img = next((tiny_data / "test" / "alpha").glob("*.png"))
    res = run_blocked(tmp_path, "-m", "cxredge", "predict", str(run_dir / "fc" / "int8.tflite"), str(img), "--json")
    assert res.returncode == 0, res.stderr
    pred = json.loads(res.stdout)
    assert pred["runtime"].startswith("ai_edge_litert") and pred["predictions"][0]["label"] in CLASSES


def test_audit_runs_with_tensorflow_blocked(tmp_path, tiny_data):
    res = run_blocked(tmp_path, "-m", "cxredge", "audit", str(tiny_data), "--out", str(tmp_path / "audit"))
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert doc["classes"] == sorted(CLASSES) and doc["probe"]["pairs"] and (tmp_path / "audit" / "audit.html").is_file()


# --- metrics against scikit-learn ---------------------------------------------------------------

def sk_compare(y, p, classes):
    from sklearn import metrics as sk

    from cxredge.edge.evaluate.metrics import classification_metrics

    labels = list(range(len(classes)))
    m = classification_metrics(y, p, classes)
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(y, p))
    for ours, avg in (("macro", "macro"), ("weighted", "weighted")):
        if ours == "macro":
            assert m["macro_precision"] == pytest.approx(sk.precision_score(y, p, labels=labels, average=avg,
                                                                            zero_division=0))
            assert m["macro_recall"] == pytest.approx(sk.recall_score(y, p, labels=labels, average=avg,
                                                                      zero_division=0))
        assert m[f"{ours}_f1"] == pytest.approx(sk.f1_score(y, p, labels=labels, average=avg, zero_division=0))
    assert m["confusion_matrix"] == sk.confusion_matrix(y, p, labels=labels).tolist()
    f1s = sk.f1_score(y, p, labels=labels, average=None, zero_division=0)
    for i, c in enumerate(classes):
        assert m["per_class"][c]["f1"] == pytest.approx(f1s[i])


def test_metrics_match_sklearn_random_and_missing_class():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 200)
    p = np.where(rng.random(200) < 0.6, y, rng.integers(0, 3, 200))  # class 3 rarely predicted
    p[p == 3] = 0  # ... and now never: precision 0 by zero_division=0
    sk_compare(y, p, CLASSES)


def test_metrics_match_sklearn_on_real_model_predictions(edge_models, tiny_data):
    from cxredge.edge.data.dataset import load_split, scan
    from cxredge.edge.runtime.interpreter import TFLiteModel

    ds = load_split(scan(tiny_data), "test")
    p = TFLiteModel(edge_models["int8"]).predict_proba(ds.x).argmax(1)
    sk_compare(ds.y, p, CLASSES)


# --- (de)quantization ---------------------------------------------------------------------------

def test_dequantize_int8_and_uint8_specs():
    from cxredge.edge.runtime.interpreter import dequantize, quantize

    u8 = {"dtype": "uint8", "scale": 1 / 256, "zero_point": 0}
    i8 = {"dtype": "int8", "scale": 1 / 256, "zero_point": -128}
    assert dequantize(np.array([0, 128, 255], np.uint8), u8).tolist() == [0.0, 0.5, 255 / 256]
    assert dequantize(np.array([-128, 0, 127], np.int8), i8).tolist() == [0.0, 0.5, 255 / 256]
    assert quantize(np.array([0.5], np.float32), i8).tolist() == [0]
    assert quantize(np.array([2.0], np.float32), u8).tolist() == [255]  # clipped, not wrapped
    px = np.arange(256, dtype=np.uint8)
    assert quantize(px, {"dtype": "uint8", "scale": 1.0, "zero_point": 0}) is px  # raw pixels pass through


@pytest.mark.parametrize("name,dtype", [("int8", "uint8"), ("int8_i8out", "int8")])
def test_quantized_outputs_dequantize_to_float_probabilities(edge_models, tiny_data, name, dtype):
    from cxredge.edge.data.dataset import load_split, scan
    from cxredge.edge.runtime.interpreter import TFLiteModel

    x = load_split(scan(tiny_data), "test", limit=8).x
    q = TFLiteModel(edge_models[name])
    f = TFLiteModel(edge_models["float32"])
    assert q.input_spec["dtype"] == "uint8" and q.input_spec["scale"] == 1.0
    assert q.output_spec["dtype"] == dtype
    for img in x:
        q.set_input(img)
        q.invoke()
        raw = q.raw_output()
        assert raw.dtype == np.dtype(dtype)
        s, zp = q.output_spec["scale"], q.output_spec["zero_point"]
        np.testing.assert_allclose(q.output(), s * (raw.astype(np.float64) - zp), rtol=1e-6)
    pq, pf = q.predict_proba(x), f.predict_proba(x)
    np.testing.assert_allclose(pq.sum(1), 1.0, atol=0.05)
    assert np.abs(pq - pf).max() < 0.1
    assert np.ptp(pf[:, 0]) > 1e-3  # the fixture's outputs really differ per image


def test_uint8_and_int8_output_models_agree(edge_models, tiny_data):
    from cxredge.edge.data.dataset import load_split, scan
    from cxredge.edge.runtime.interpreter import TFLiteModel

    x = load_split(scan(tiny_data), "test").x
    a = TFLiteModel(edge_models["int8"]).predict_proba(x)
    b = TFLiteModel(edge_models["int8_i8out"]).predict_proba(x)
    assert np.abs(a - b).max() <= 2 / 256 + 1e-6


# --- predict --------------------------------------------------------------------------------------

def test_predict_table_json_and_labels_file(run_dir, tiny_data, tmp_path, edge_models):
    imgs = sorted((tiny_data / "test" / "beta").glob("*.png"))[:2]
    res = runner.invoke(app, ["predict", str(run_dir / "two_conv" / "int8.tflite"), *map(str, imgs), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [Path(p["image"]).name for p in doc["predictions"]] == [i.name for i in imgs]
    for p in doc["predictions"]:
        assert (set(p["probabilities"]) == set(CLASSES)
                and p["label"] == max(p["probabilities"], key=p["probabilities"].get))
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(edge_models["int8"].read_bytes())
    res = runner.invoke(app, ["predict", str(bare), str(imgs[0])])
    assert res.exit_code == 1 and "--labels" in res.output
    (tmp_path / "labels.txt").write_text("a\nb\nc\nd\n")
    res = runner.invoke(app,
                        ["predict", str(bare), str(tiny_data / "test" / "beta"), "--labels",
                         str(tmp_path / "labels.txt")])
    assert res.exit_code == 0 and res.output.count(".png") == 4


# --- bad input: one line, exit 1, no traceback ----------------------------------------------------

def assert_clean_error(res, *words):
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit)
    for w in words:
        assert w in res.output, res.output


def test_bad_model_files(tmp_path, edge_models, tiny_data):
    img = str(next((tiny_data / "test" / "alpha").glob("*.png")))
    text = tmp_path / "notes.tflite"
    text.write_text("this is not a model at all")
    assert_clean_error(runner.invoke(app, ["predict", str(text), img, "--labels", str(text)]), "notes.tflite", "TFL3")
    trunc = tmp_path / "trunc.tflite"
    trunc.write_bytes(edge_models["int8"].read_bytes()[:5000])
    (tmp_path / "labels.txt").write_text("\n".join(CLASSES))
    assert_clean_error(runner.invoke(app, ["predict", str(trunc), img, "--labels", str(tmp_path / "labels.txt")]),
                       "trunc.tflite")
    assert_clean_error(runner.invoke(app, ["bench", str(text), "--data", str(tiny_data)]), "TFL3")


def test_unreadable_image_is_named_and_others_still_predicted(run_dir, tiny_data, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    good = next((tiny_data / "test" / "alpha").glob("*.png"))
    res = runner.invoke(app, ["predict", str(run_dir / "fc" / "int8.tflite"), str(bad), str(good)])
    assert_clean_error(res, "broken.png", "1 of 2 images")
    assert good.name in res.output


def test_labels_that_differ_from_the_dataset(run_dir, tmp_path, tiny_data):
    other = make_dataset(tmp_path / "other", classes=("cat", "dog"), counts={"train": 1, "val": 1, "test": 1})
    res = runner.invoke(app, ["bench", "--run", str(run_dir), "--data", str(other), "--runs", "2"])
    assert_clean_error(res, "'cat' is not a class of the model", "alpha, beta, delta, gamma")


def test_empty_folders(tmp_path, run_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_clean_error(runner.invoke(app, ["bench", "--run", str(empty)]), "no .tflite")
    assert_clean_error(runner.invoke(app, ["bench", str(empty)]), "no .tflite")
    assert_clean_error(runner.invoke(app, ["predict", str(run_dir / "fc" / "int8.tflite"), str(empty)]), "no images")
    assert_clean_error(runner.invoke(app, ["bench", "--run", str(tmp_path / "missing")]), "not found")


# --- device facts ---------------------------------------------------------------------------------

def test_device_facts_decode_pi_thermal_and_throttling(tmp_path, monkeypatch):
    from cxredge.edge.runtime import device

    zone = tmp_path / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "temp").write_text("61234\n")
    (zone / "type").write_text("cpu-thermal\n")
    monkeypatch.setattr(device, "THERMAL", tmp_path / "thermal")
    fake = tmp_path / "bin" / "vcgencmd"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho throttled=0x50005\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    freq = tmp_path / "cpufreq"
    freq.mkdir()
    for name, value in (("scaling_governor", "ondemand"), ("scaling_cur_freq", "1500000"),
                        ("scaling_max_freq", "2400000")):
        (freq / name).write_text(value + "\n")
    monkeypatch.setattr(device, "CPUFREQ", freq)
    monkeypatch.setenv("CXREDGE_DEVICE_NOTE", "qemu-user emulation")
    info = device.device_info()
    assert info["cpu_governor"] == "ondemand" and info["cpu_mhz"] == {"cur": 1500, "max": 2400}
    assert info["note"] == "qemu-user emulation"
    assert info["temperature_c"] == {"cpu-thermal": 61.2}
    assert info["throttled"]["raw"] == "0x50005"
    assert set(info["throttled"]["flags"]) == {"under-voltage now", "throttled now", "under-voltage has occurred",
                                               "throttling has occurred"}
    assert info["cores"] >= 1 and info["machine"] and info["os"]
