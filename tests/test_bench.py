"""cxredge bench / export: bench.json contract, failed delegate rows, bundle round trip."""
from __future__ import annotations

import json
import zipfile

import pytest
from typer.testing import CliRunner

from cxredge.cli.main import app
from edge_fixtures import CLASSES, make_run

runner = CliRunner()
ROW_KEYS = {"model", "variant", "precision", "delegate", "threads", "size_bytes", "accuracy", "macro_f1",
            "agreement_with_float", "latency_ms", "status"}
LAT_KEYS = {"init", "first", "median", "p90", "p99", "mean", "std", "runs"}


@pytest.fixture(scope="module")
def run_dir(edge_models, tiny_data, tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("bench_run"), edge_models, tiny_data)


@pytest.fixture(scope="module")
def bench_doc(run_dir):
    res = runner.invoke(app, ["bench", "--run", str(run_dir), "--runs", "5", "--warmup", "1",
                              "--delegate", "xnnpack,none,/no/such/libdelegate.so", "--threads", "1,2"])
    assert res.exit_code == 0, res.output
    return json.loads((run_dir / "bench" / "test" / "bench.json").read_text()), res.output


def test_bench_json_contract(bench_doc, run_dir):
    doc, _ = bench_doc
    assert {"machine", "cpu_model", "cores", "os", "runtime", "runtime_version"} <= set(doc["device"])
    assert len(doc["results"]) == 4 * 3 * 2  # models x delegates x threads
    for r in doc["results"]:
        assert ROW_KEYS <= set(r)
        if r["status"] == "ok":
            assert LAT_KEYS <= set(r["latency_ms"]) and r["latency_ms"]["runs"] == 5
            lat = r["latency_ms"]
            assert 0 < lat["median"] <= lat["p90"] <= lat["p99"] and lat["init"] > 0 and lat["first"] > 0
            assert r["peak_rss_mb"] > 0
    assert (run_dir / "bench" / "test" / "bench.md").read_text().startswith("# cxredge bench")
    assert set(doc["models"]) == {"fc/float32", "fc/int8", "two_conv/float32", "two_conv/int8"}


def test_missing_delegate_fails_its_rows_only(bench_doc):
    doc, output = bench_doc
    failed = [r for r in doc["results"] if r["status"] == "failed"]
    assert len(failed) == 8 and all(r["delegate"] == "/no/such/libdelegate.so" for r in failed)
    assert all("libdelegate.so" in r["error"] and r["latency_ms"] is None for r in failed)
    ok = [r for r in doc["results"] if r["status"] == "ok"]
    assert len(ok) == 16 and {r["delegate"] for r in ok} == {"xnnpack", "none"}
    assert "8 of 24 rows failed" in output and "Traceback" not in output


def test_accuracy_is_from_real_predictions(bench_doc, run_dir, tiny_data):
    from cxredge.edge.data.dataset import load_split, scan
    from cxredge.edge.evaluate.metrics import agreement, classification_metrics
    from cxredge.edge.runtime.interpreter import TFLiteModel

    doc, _ = bench_doc
    ds = load_split(scan(tiny_data), "test")
    pf = TFLiteModel(run_dir / "fc" / "float32.tflite").predict_proba(ds.x).argmax(1)
    pq = TFLiteModel(run_dir / "fc" / "int8.tflite").predict_proba(ds.x).argmax(1)
    m = doc["models"]["fc/int8"]
    assert m["confusion_matrix"] == classification_metrics(ds.y, pq, CLASSES)["confusion_matrix"]
    assert m["agreement_with_float"] == pytest.approx(agreement(pq, pf))
    assert doc["models"]["fc/float32"]["agreement_with_float"] == 1.0
    assert m["n"] == 16 and sum(map(sum, m["confusion_matrix"])) == 16


def test_speedup_is_float_median_over_row_median(bench_doc):
    doc, _ = bench_doc
    rows = {(r["model"], r["delegate"], r["threads"]): r for r in doc["results"] if r["status"] == "ok"}
    for (model, delegate, threads), r in rows.items():
        variant = model.split("/")[0]
        f = rows[(f"{variant}/float32", delegate, threads)]
        if r.get("latency_noisy") or f.get("latency_noisy"):  # never a speed-up from a noisy row
            assert r["speedup_vs_float32"] is None and "noisy" in r["speedup_withheld"]
            continue
        assert r["speedup_vs_float32"] == pytest.approx(f["latency_ms"]["median"] / r["latency_ms"]["median"])


def test_plots_or_a_note(bench_doc, run_dir):
    doc, _ = bench_doc
    pytest.importorskip("matplotlib")  # the dev install has it; the no-matplotlib path is tested below
    models = [k.replace("/", "_") for k in doc["models"]]
    assert doc["plots"] == ["bench_accuracy_latency.png", "bench_latency.png"] + [
        f"{kind}_{m}.png" for m in models for kind in ("roc", "reliability")]
    for p in doc["plots"]:
        assert (run_dir / "bench" / "test" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_skipped_cleanly_without_matplotlib(bench_doc, tmp_path, monkeypatch):
    import sys

    from cxredge.edge.render import plots

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    paths, note = plots.bench_plots(bench_doc[0], tmp_path)
    assert paths == [] and "matplotlib" in note and not list(tmp_path.iterdir())


def test_bench_single_model_with_limit_and_split_all(run_dir, tiny_data, tmp_path):
    res = runner.invoke(app, ["bench", str(run_dir / "two_conv" / "int8.tflite"), "--runs", "2", "--warmup", "0",
                              "--limit", "6", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert doc["dataset"]["n"] == 6 and len(doc["results"]) == 1
    # the float32 sibling was run for agreement only (no latency row of its own)
    assert doc["models"]["two_conv/int8"]["agreement_with_float"] is not None
    res = runner.invoke(app, ["bench", str(run_dir / "fc" / "int8.tflite"), "--data", str(tiny_data),
                              "--split", "all", "--runs", "2", "--out", str(tmp_path)])
    assert res.exit_code == 0 and json.loads((tmp_path / "bench.json").read_text())["dataset"]["n"] == 64


def test_bad_options(run_dir):
    for args, word in ((["--threads", "0"], "--threads"), (["--runs", "0"], "--runs"),
                       (["--delegate-option", "novalue"], "KEY=VALUE"), (["--split", "nope"], "--split nope")):
        res = runner.invoke(app, ["bench", "--run", str(run_dir), *args])
        assert res.exit_code == 1 and word in res.output and "Traceback" not in res.output, res.output


# --- bundles ----------------------------------------------------------------------------------

def test_bundle_round_trip(run_dir, tmp_path, monkeypatch, bench_doc):
    bundle = tmp_path / "models.zip"
    res = runner.invoke(app, ["export", "--run", str(run_dir), "--out", str(bundle), "--with-test-images"])
    assert res.exit_code == 0, res.output
    names = zipfile.ZipFile(bundle).namelist()
    assert {"bundle.json", "labels.txt", "run.json", "fc/int8.tflite", "fc/int8.json", "fc/metrics.json"} <= set(names)
    assert sum(n.startswith("test_images/") for n in names) == 16
    device = tmp_path / "device"
    device.mkdir()
    monkeypatch.chdir(device)  # as on a Pi: only the zip, no run folder, no dataset path
    res = runner.invoke(app, ["bench", str(bundle), "--runs", "2", "--warmup", "0"])
    assert res.exit_code == 0, res.output
    doc = json.loads((device / "bench" / "test" / "bench.json").read_text())
    assert doc["origin"] == "bundle" and doc["dataset"]["n"] == 16
    for key, m in doc["models"].items():  # same images, same models -> same predictions as from the run
        assert m["confusion_matrix"] == bench_doc[0]["models"][key]["confusion_matrix"]
    img = sorted((tiny_data_dir(run_dir) / "test" / "alpha").glob("*.png"))[0]
    res = runner.invoke(app, ["predict", str(bundle), str(img), "--variant", "fc", "--precision", "int8", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["predictions"][0]["label"] in CLASSES


def tiny_data_dir(run_dir):
    from pathlib import Path

    return Path(json.loads((run_dir / "run.json").read_text())["data"]["path"])


def test_export_subset_and_errors(run_dir, tmp_path):
    out = tmp_path / "int8.zip"
    res = runner.invoke(app, ["export", "--run", str(run_dir), "--out", str(out), "--precision", "int8"])
    assert res.exit_code == 0, res.output
    models = json.loads(zipfile.ZipFile(out).read("bundle.json"))["models"]
    assert [m["path"] for m in models] == ["fc/int8.tflite", "two_conv/int8.tflite"]
    res = runner.invoke(app, ["export", "--run", str(run_dir), "--out", str(tmp_path / "x.zip"), "--variant", "nope"])
    assert res.exit_code == 1 and "no .tflite models" in res.output and not (tmp_path / "x.zip").exists()
    res = runner.invoke(app, ["export", "--run", str(run_dir), "--out", str(tmp_path / "x.tar")])
    assert res.exit_code == 1 and ".zip" in res.output


@pytest.mark.parametrize("member", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt"])
def test_bundle_with_unsafe_member_is_refused(tmp_path, member):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("bundle.json", json.dumps({"format": "cxredge-bundle/1", "models": []}))
        zf.writestr(member, "x")
    res = runner.invoke(app, ["bench", str(bad)])
    assert res.exit_code == 1 and "unsafe member" in res.output and "Traceback" not in res.output
    assert not (tmp_path.parent / "evil.txt").exists()


def test_damaged_bundle_and_sha_mismatch(run_dir, tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 not really")
    res = runner.invoke(app, ["bench", str(junk)])
    assert res.exit_code == 1 and "junk.zip" in res.output
    good = tmp_path / "good.zip"
    assert runner.invoke(app, ["export", "--run", str(run_dir), "--out", str(good), "--variant", "fc"]).exit_code == 0
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(tampered, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "fc/int8.tflite":
                data = data[:-1] + bytes([data[-1] ^ 1])
            dst.writestr(info, data)
    res = runner.invoke(app, ["bench", str(tampered)])
    assert res.exit_code == 1 and "sha256" in res.output
