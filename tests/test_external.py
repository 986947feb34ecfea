"""External test sets (test/ only, or class folders = every image is test), the clinical block in
bench.json, and the report's internal-vs-external section. TF-free at run time (models made by the fixtures)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from cxredge.cli.main import app
from edge_fixtures import CLASSES, make_run

runner = CliRunner()
FAST = ["--runs", "2", "--warmup", "0"]
CLINICAL_ROW_KEYS = {"per_class", "macro_auc", "brier", "ece", "ci95", "paired_vs_float"}


@pytest.fixture(scope="module")
def run_dir(edge_models, tiny_data, tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("ext_run"), edge_models, tiny_data, variants=("two_conv",))


def external_from_val(tiny_data, dest, layout="test"):
    """Copy the tiny dataset's val/ to DEST/test/ (layout 'test') or DEST/ (layout 'classes')."""
    target = dest / "test" if layout == "test" else dest
    shutil.copytree(tiny_data / "val", target)
    return dest


def bench(*args):
    return runner.invoke(app, ["bench", *map(str, args), *FAST])


def test_internal_bench_has_the_clinical_block(run_dir, tiny_data):
    res = bench("--run", run_dir, "--ci", "300")
    assert res.exit_code == 0, res.output
    doc = json.loads((run_dir / "bench" / "test" / "bench.json").read_text())
    assert doc["dataset"]["n"] == 16 and doc["dataset"]["name"] == tiny_data.name
    assert doc["clinical"]["resamples"] == 300 and doc["clinical"]["missing_classes"] == []
    for row in doc["results"]:
        assert CLINICAL_ROW_KEYS <= set(row), row["model"]
        assert set(row["per_class"]) == set(CLASSES)
        for v in row["per_class"].values():
            assert {"sensitivity", "specificity", "ppv", "npv", "f1", "auc", "sens_at_spec95", "support",
                    "precision", "recall"} <= set(v)
            assert v["sensitivity"] == pytest.approx(v["recall"])
        lo, hi = row["ci95"]["accuracy"]
        assert lo <= row["accuracy"] <= hi
    int8 = doc["models"]["two_conv/int8"]["paired_vs_float"]
    assert int8["reference"] == "two_conv/float32" and 0.0 <= int8["mcnemar_p"] <= 1.0
    # the paired difference is computed from the recorded per-image predictions
    y = np.repeat(np.arange(4), 4)
    p8 = np.array(doc["models"]["two_conv/int8"]["predicted"].split(), dtype=int)
    p32 = np.array(doc["models"]["two_conv/float32"]["predicted"].split(), dtype=int)
    assert int8["accuracy_diff"] == pytest.approx((p8 == y).mean() - (p32 == y).mean())
    md = (run_dir / "bench" / "test" / "bench.md").read_text()
    assert "## Clinical metrics" in md and "sensitivity (95% CI)" in md
    assert "clinical metrics on" in res.output and "95% CI" in res.output  # the console's clinical table
    for name in ("roc_two_conv_int8.png", "reliability_two_conv_int8.png"):
        assert (run_dir / "bench" / "test" / name).read_bytes()[:4] == b"\x89PNG"


def test_external_test_only_folder_is_benched_whole(run_dir, tiny_data, tmp_path):
    ext = external_from_val(tiny_data, tmp_path / "hospital_b")
    out = tmp_path / "out"
    res = bench("--run", run_dir, "--data", ext, "--out", out, "--ci", "200")
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "bench.json").read_text())
    ds = doc["dataset"]
    assert ds["n"] == 16 and ds["layout"] == "test-only" and ds["name"] == "hospital_b" and ds["split"] == "test"
    assert "16 of 16 test images" in res.output
    # --data EXT/test (class folders only): every image is test, none subsampled, named after EXT
    res = bench("--run", run_dir, "--data", ext / "test", "--out", out, "--ci", "0", "--name", "Hospital B")
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "bench.json").read_text())
    assert doc["dataset"]["n"] == 16 and doc["dataset"]["name"] == "Hospital B"
    assert doc["results"][0]["ci95"] is None and doc["results"][0]["macro_auc"] is not None


def test_missing_class_is_null_and_unknown_class_is_an_error(run_dir, tiny_data, tmp_path):
    ext = external_from_val(tiny_data, tmp_path / "ext")
    shutil.rmtree(ext / "test" / "gamma")
    (ext / "test" / "beta").rename(ext / "test" / "BETA")  # matched by name, case aside
    out = tmp_path / "out"
    res = bench("--run", run_dir, "--data", ext, "--out", out, "--ci", "100")
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "bench.json").read_text())
    assert doc["dataset"]["missing_classes"] == ["gamma"] and doc["dataset"]["classes"] == CLASSES
    assert doc["dataset"]["counts"] == {"alpha": 4, "beta": 4, "delta": 4, "gamma": 0}
    m = doc["models"]["two_conv/int8"]
    g = m["per_class"]["gamma"]
    assert g["sensitivity"] is None and g["auc"] is None and g["f1"] is None and g["recall"] is None
    assert g["specificity"] is not None and g["support"] == 0
    present = [m["per_class"][c]["f1"] for c in ("alpha", "beta", "delta")]
    assert m["macro_f1"] == pytest.approx(np.mean(present)) and m["macro_over"] == ["alpha", "beta", "delta"]
    assert any("gamma" in n for n in doc["notes"])
    (ext / "test" / "pneumothorax").mkdir()
    shutil.copy(next((ext / "test" / "alpha").iterdir()), ext / "test" / "pneumothorax" / "x.png")
    res = bench("--run", run_dir, "--data", ext, "--out", out)
    assert res.exit_code == 1 and "'pneumothorax' is not a class of the model" in res.output


def test_run_dataset_given_as_data_keeps_its_split(run_dir, tiny_data, tmp_path):
    res = bench("--run", run_dir, "--data", tiny_data, "--out", tmp_path, "--ci", "0")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "bench.json").read_text())["dataset"]["n"] == 16  # the test split, not 64
    res = bench("--run", run_dir, "--data", tiny_data / "test", "--out", tmp_path, "--split", "val")
    assert res.exit_code == 1 and "--split val" in res.output


def test_report_puts_internal_and_external_side_by_side(run_dir, tiny_data, tmp_path):
    internal, external = tmp_path / "internal", tmp_path / "external"
    assert bench("--run", run_dir, "--out", internal, "--ci", "100", "--name", "internal").exit_code == 0
    ext = external_from_val(tiny_data, tmp_path / "hospital_b")
    assert bench("--run", run_dir, "--data", ext, "--out", external, "--ci", "100").exit_code == 0
    res = runner.invoke(app, ["report", "--bench", str(internal / "bench.json"), "--bench",
                              str(external / "bench.json"), "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert md.index("## Internal vs external test sets") < md.index("## On-device benchmark")
    assert "internal (test, n=16) -&gt; hospital_b (test, n=16)" in md  # the heading, escaped (cxredge/markdown.py)
    a = json.loads((internal / "bench.json").read_text())["models"]["two_conv/int8"]["accuracy"]
    b = json.loads((external / "bench.json").read_text())["models"]["two_conv/int8"]["accuracy"]
    assert f"{100 * (b - a):+.1f} pt" in md
    assert "sensitivity (95% CI)" in md and "reliability diagram" in md
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "Internal vs external" in html and html.count("data:image/png;base64") >= 5
