"""`cxredge ensemble`: logit averaging of trained models into one model that quantizes and benches."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import invoke, read

pytest.importorskip("cxredge.keras")

FAST = ["--alpha", "0.25", "--weights", "none", "--no-audit", "--cache-views", "1", "--batch-size", "16",
        "--epochs", "2", "--patience", "0"]


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory):
    """Run A: fc + two_conv (seed 0); run B: two_conv (seed 1), on the same tiny data."""
    base = tmp_path_factory.mktemp("ens")
    for name, variants, seed in (("a", "fc,two_conv", 0), ("b", "two_conv", 1)):
        result = invoke("train", "--data", tiny_data, "--out", base / name, "--variant", variants, "--seed", seed,
                        *FAST)
        assert result.exit_code == 0, result.output
    return base


def member_logits(path, x):
    from cxredge.keras import keras
    from cxredge.train.ensemble import logits_model
    return logits_model(keras.models.load_model(path, compile=False), "m").predict(x, verbose=0)


def test_ensemble_is_the_weighted_mean_of_member_logits(runs, tiny_data, tmp_path):
    from cxredge.edge.data.dataset import load_split, scan
    from cxredge.keras import keras
    run = tmp_path / "run"
    shutil.copytree(runs / "a", run)
    result = invoke("ensemble", "--run", run, "--members", f"fc,two_conv,{runs / 'b' / 'two_conv'}",
                    "--weights", "1,2,1")
    assert result.exit_code == 0, result.output
    x = load_split(scan(tiny_data), "test").x.astype(np.float32)
    z = [member_logits(p, x) for p in (run / "fc" / "model.keras", run / "two_conv" / "model.keras",
                                        runs / "b" / "two_conv" / "model.keras")]
    mean = 0.25 * z[0] + 0.5 * z[1] + 0.25 * z[2]
    expected = np.exp(mean - mean.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    got = keras.models.load_model(run / "ensemble" / "model.keras", compile=False).predict(x, verbose=0)
    assert np.abs(got - expected).max() < 1e-5
    # a member's own probabilities are the softmax of its logits: the logits head copies the Dense
    own = keras.models.load_model(run / "fc" / "model.keras", compile=False).predict(x, verbose=0)
    soft = np.exp(z[0] - z[0].max(1, keepdims=True))
    assert np.abs(own - soft / soft.sum(1, keepdims=True)).max() < 1e-5

    m = read(run / "ensemble" / "metrics.json")
    y = load_split(scan(tiny_data), "test").y
    assert m["accuracy"] == pytest.approx(float((got.argmax(1) == y).mean()))
    assert [r["weight"] for r in m["ensemble"]["members"]] == [0.25, 0.5, 0.25]
    assert set(m["members"]) == {"fc", "two_conv", "b/two_conv"}
    assert m["members"]["fc"]["test"]["accuracy"] == pytest.approx(float((own.argmax(1) == y).mean()))
    assert "ci95" in m and "macro_auc" in m and m["variant"] == "ensemble"
    assert "ensemble" in read(run / "run.json")["variants"]


def test_ensemble_quantizes_and_benches_as_a_variant(runs, tiny_data, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs / "a", run)
    assert invoke("ensemble", "--run", run, "--members", "fc,two_conv").exit_code == 0
    result = invoke("quantize", "--run", run, "--variant", "ensemble", "--calibration-size", "8")
    assert result.exit_code == 0, result.output
    row = {r["precision"]: r for r in read(run / "quantize.json")["results"]}
    assert set(row) == {"float32", "int8"} and row["float32"]["agreement"] == 1.0
    side = read(run / "ensemble" / "int8.json")
    assert side["variant"] == "ensemble" and side["source"]["model"] == "ensemble/model.keras"
    result = invoke("bench", "--run", run, "--runs", "2", "--warmup", "1", "--threads", "1", "--ci", "0")
    assert result.exit_code == 0, result.output
    rows = read(run / "bench" / "test" / "bench.json")["results"]
    assert {r["model"] for r in rows if r.get("status") == "ok"} >= {"ensemble/float32", "ensemble/int8"}
    result = invoke("report", "--run", run, "--bench", run / "bench" / "test" / "bench.json")
    assert result.exit_code == 0, result.output
    report = (run / "report.md").read_text()
    assert "| ensemble |" in report and "ensemble: some figures missing" not in report
    image = next((tiny_data / "test").glob("*/*.png"))
    result = invoke("explain", run / "ensemble" / "model.keras", image, "--out", tmp_path / "explain")
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "an ensemble: explain one member" in text, text


@pytest.mark.parametrize("members, weights, needle", [
    ("fc", None, "at least 2"),
    ("fc,fc", None, "named twice"),
    ("fc,one_conv", None, "one_conv"),
    ("fc,two_conv", "1,x", "--weights x"),
    ("fc,two_conv", "1", "2 members"),
    ("fc,two_conv", "0,0", "positive sum"),
])
def test_bad_members_or_weights_one_line_error_nothing_written(runs, tmp_path, members, weights, needle):
    run = tmp_path / "run"
    shutil.copytree(runs / "a", run)
    before = (run / "run.json").read_bytes()
    args = ["ensemble", "--run", run, "--members", members] + (["--weights", weights] if weights else [])
    result = invoke(*args)
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "error:" in text and needle in text, text
    assert not (run / "ensemble").exists() and (run / "run.json").read_bytes() == before


def test_members_of_other_classes_are_refused(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs / "a", run)
    other = tmp_path / "other"
    shutil.copytree(runs / "b", other)
    doc = read(other / "run.json")
    doc["classes"] = list(reversed(doc["classes"]))
    (other / "run.json").write_text(json.dumps(doc))
    result = invoke("ensemble", "--run", run, "--members", f"two_conv,{other / 'two_conv'}")
    assert result.exit_code == 1 and "trained on classes" in result.output
    assert not (run / "ensemble").exists()


def test_train_ensemble_flag(tiny_data, tmp_path):
    result = invoke("train", "--data", tiny_data, "--out", tmp_path / "one", "--variant", "fc", "--ensemble", *FAST)
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "--ensemble: needs at least 2 variants" in text, text
    assert not (tmp_path / "one").exists()  # refused before any image was decoded
    result = invoke("train", "--data", tiny_data, "--out", tmp_path / "two", "--variant", "fc,one_conv", "--ensemble",
                    *FAST)
    assert result.exit_code == 0, result.output
    m = read(tmp_path / "two" / "ensemble" / "metrics.json")
    assert [r["label"] for r in m["ensemble"]["members"]] == ["fc", "one_conv"]
    assert read(tmp_path / "two" / "run.json")["variants"] == ["fc", "one_conv", "ensemble"]
