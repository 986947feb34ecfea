"""cxredge explain: occlusion saliency with a known answer, regions, batching, compare, report, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxredge.cli.main import app
from cxredge.edge.explain.occlusion import (
    BatchRunner,
    OcclusionSettings,
    Saliency,
    compare_maps,
    occlusion,
    pearson,
    positions,
    rankdata,
    region_shares,
    spearman,
)
from cxredge.edge.runtime.interpreter import TFLiteModel
from edge_fixtures import CLASSES, make_run
from explain_fixtures import A, batch1_only, cam_model, flat, region_model
from test_edge import assert_clean_error, run_blocked

runner = CliRunner()
SMALL = OcclusionSettings(patch=56, stride=56)  # 4 x 4 = 16 occlusions: fast on the MobileNet fixtures


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    d = tmp_path_factory.mktemp("known")
    return {"centre": region_model(d / "centre.tflite", (96, 128, 96, 128)),
            "corner": region_model(d / "corner.tflite", (0, 32, 0, 32)),
            "batch1": batch1_only(d / "batch1.tflite")}


def expected_grid(box, settings, value=200.0, fill=128.0):
    """The region model's drop for every patch, computed from its formula (not from the code under test)."""
    y0, y1, x0, x1 = box
    area = (y1 - y0) * (x1 - x0)
    p0 = lambda m: 1 / (1 + np.exp(-2 * 3 * A * (m - 128)))  # noqa: E731
    ys = xs = positions(224, settings.patch, settings.stride)
    grid = np.zeros((len(ys), len(xs)))
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            ov = max(0, min(y1, y + settings.patch) - max(y0, y)) * max(0, min(x1, x + settings.patch) - max(x0, x))
            grid[i, j] = p0(value) - p0(value - (value - fill) * ov / area)
    return grid


@pytest.mark.parametrize("name,box", [("centre", (96, 128, 96, 128)), ("corner", (0, 32, 0, 32))])
def test_saliency_is_where_the_model_looks(known, name, box):
    s = OcclusionSettings()
    m = TFLiteModel(known[name])
    sal = occlusion(BatchRunner(m, 16), flat(200), s)
    assert sal.target == 0 and sal.grid.shape == (13, 13)
    np.testing.assert_allclose(sal.grid, expected_grid(box, s), atol=2e-6)
    other = occlusion(BatchRunner(m, 16), flat(200), s, target=1)  # --class: hiding R makes class 1 likelier
    assert other.target == 1 and np.allclose(other.grid, -sal.grid, atol=2e-6)
    y0, y1, x0, x1 = box
    peak = np.unravel_index(sal.heatmap.argmax(), sal.heatmap.shape)
    assert y0 <= peak[0] < y1 and x0 <= peak[1] < x1
    outside = np.ones((224, 224), bool)
    outside[max(0, y0 - 31):y1 + 31, max(0, x0 - 31):x1 + 31] = False  # farther than a patch from R: no patch reaches R
    assert np.abs(sal.heatmap[outside]).max() < 1e-6
    shares = region_shares(sal.heatmap, s.border)
    if name == "centre":
        assert shares["border_share"] == 0.0 and shares["center_share"] == 1.0
    else:  # heat spans rows/cols 0..48; the strip is 0..28: most of it is in the strip
        assert shares["border_share"] > 0.6 and shares["border_enrichment"] > 1.3


def test_region_shares_exact_on_hand_made_maps():
    from cxredge.edge.explain.occlusion import border_mask

    mask = border_mask((224, 224), 0.125)
    assert mask[27, 100] and not mask[28, 100] and mask[100, 196] and not mask[100, 195]
    assert region_shares(np.ones((224, 224)), 0.125)["border_share"] == pytest.approx(1 - (168 / 224) ** 2)
    heat = np.where(mask, 3.0, 1.0)
    heat[100, 100] = -50  # negative saliency is left out of the shares
    r = region_shares(heat, 0.125)
    area = mask.mean()
    assert r["border_share"] == pytest.approx(3 * area / (3 * area + (1 - area) - 1 / 224 ** 2))
    assert r["border_area_share"] == pytest.approx(0.4375)
    assert region_shares(-np.ones((224, 224)), 0.125)["border_share"] is None  # no positive saliency


def test_correlations_match_scipy_and_are_bounded():
    from scipy import stats

    rng = np.random.default_rng(0)
    a = rng.normal(size=(13, 13))
    b = a + rng.normal(size=(13, 13))
    ties = np.round(b, 0)
    assert pearson(a, b) == pytest.approx(stats.pearsonr(a.ravel(), b.ravel())[0])
    assert spearman(a, ties) == pytest.approx(stats.spearmanr(a.ravel(), ties.ravel())[0])
    np.testing.assert_allclose(rankdata(ties), stats.rankdata(ties.ravel()))
    assert pearson(a, a) == pytest.approx(1.0) and pearson(a, -a) == pytest.approx(-1.0)
    assert pearson(a, np.zeros_like(a)) is None


def test_compare_maps_of_different_grids_uses_the_heatmaps():
    rng = np.random.default_rng(1)
    heat = np.kron(rng.normal(size=(7, 7)), np.ones((32, 32)))  # a 7 x 7 pattern at 224 x 224
    p = np.array([0.7, 0.3])
    a = Saliency(p, 0, rng.normal(size=(13, 13)), heat.astype(np.float32), 0.0)
    b = Saliency(p[::-1], 1, heat[::32, ::32], heat.astype(np.float32), 0.0, method="gradcam")
    v = compare_maps(a, b)
    assert v["on"] == "heatmaps averaged to 7x7" and v["pearson"] == pytest.approx(1.0) and not v["same_class"]


def test_batched_and_unbatched_give_the_same_heatmap(edge_models, tiny_data):
    from cxredge.edge.data.images import load_image

    img = load_image(next((tiny_data / "test" / "beta").glob("*.png")))
    for name in ("float32", "int8"):
        one = BatchRunner(TFLiteModel(edge_models[name]), 1)
        many = BatchRunner(TFLiteModel(edge_models[name]), 5)  # 17 evaluations: the last batch is padded
        assert one.batch == 1 and many.batch == 5 and many.note is None
        a, b = occlusion(one, img, SMALL, 1), occlusion(many, img, SMALL, 5)
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)
        np.testing.assert_allclose(a.heatmap, b.heatmap, atol=1e-6)
        assert np.abs(a.grid).max() > 0  # the fixture really reacts to occlusion


def test_a_model_fixed_at_batch_1_falls_back_and_stays_right(known):
    runner_ = BatchRunner(TFLiteModel(known["batch1"]), 8)
    assert runner_.batch == 1 and "batch 8" in runner_.note
    x = np.stack([flat(200), flat(60)])
    p = runner_(x)
    assert p.shape == (2, 2) and p[0, 0] > 0.5 > p[1, 0]


def test_compare_float_int8_and_self_then_report(run_dir, tiny_data):
    model, other = run_dir / "two_conv" / "int8.tflite", run_dir / "two_conv" / "float32.tflite"
    res = runner.invoke(app,
                        ["explain", str(model), str(tiny_data / "test"), "--per-class", "2", "--compare", str(other),
                              "--patch", "56", "--stride", "56"])
    assert res.exit_code == 0, res.output
    doc = json.loads((run_dir / "explain" / "explain.json").read_text())  # default --out: <run>/explain
    assert [m["key"] for m in doc["models"]] == ["int8", "float32"] and len(doc["images"]) == 8
    assert [m["batch"] for m in doc["models"]] == [8, 1]  # default: batched for int8, one per invoke for float
    for e in doc["images"]:
        v = e["float32"]["vs_int8"]
        assert -1 <= v["pearson"] <= 1 and -1 <= v["spearman"] <= 1
        assert e["true_class"] == Path(e["image"]).parent.name
        assert np.asarray(e["int8"]["grid"]).shape == (4, 4)
        heat = np.load(run_dir / "explain" / e["int8"]["heatmap_npy"])
        assert (heat.shape == (224, 224)
                and e["int8"]["border_share"] == pytest.approx(region_shares(heat, 0.125)["border_share"]))
        with Image.open(run_dir / "explain" / e["float32"]["overlay"]) as im:
            assert im.size[0] > 224
    assert set(doc["summary"]["per_class"]) == set(CLASSES) and doc["summary"]["per_class"]["beta"]["n"] == 2
    res = runner.invoke(app, ["report", "--run", str(run_dir)])
    assert res.exit_code == 0, res.output
    md = (run_dir / "report.md").read_text()
    assert "Where the model looks" in md and "](explain/grid.png)" in md
    assert "| beta | 2 |" in md and "Pearson float32 vs int8" in md
    out = run_dir / "self"
    res = runner.invoke(app, ["explain", str(model), str(next((tiny_data / "test" / "alpha").glob("*.png"))),
                              "--compare", str(model), "--patch", "56", "--stride", "56", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    v = json.loads(res.stdout)["images"][0]["int8_compare"]["vs_int8"]
    assert v["pearson"] == pytest.approx(1.0) and v["spearman"] == pytest.approx(1.0) and v["same_class"]


@pytest.fixture(scope="module")
def run_dir(edge_models, tiny_data, tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("explain_run"), edge_models, tiny_data, variants=("two_conv",))


def test_explain_runs_with_tensorflow_blocked(tmp_path, run_dir, tiny_data):
    img = next((tiny_data / "test" / "gamma").glob("*.png"))
    res = run_blocked(tmp_path, "-m", "cxredge", "explain", str(run_dir / "two_conv" / "int8.tflite"), str(img),
                      "--patch", "112", "--stride", "112", "--out", str(tmp_path / "ex"))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "ex" / "grid.png").is_file() and (tmp_path / "ex" / "explain.json").is_file()


def test_gradcam_lights_up_what_the_class_uses(tmp_path):
    from cxredge.keras import keras
    from cxredge.train.gradcam import gradcam, gradcam_model

    path = cam_model(tmp_path / "model.keras")
    gm = gradcam_model(keras.models.load_model(path, compile=False))
    img = flat(100)
    img[64:96, 128:160] = 220  # exactly cell (2, 4) of the 7 x 7 map
    sal = gradcam(gm, img)
    assert sal.target == 0 and sal.grid.shape == (7, 7) and sal.heatmap.shape == (224, 224)
    assert sal.grid[2, 4] == pytest.approx(1.0) and np.delete(sal.grid.ravel(), 2 * 7 + 4).max() == 0.0
    assert np.unravel_index(sal.heatmap.argmax(), (224, 224))[0] in range(64, 96)
    assert gradcam(gm, img, target=1).grid.max() == 0.0  # class 1 only has negative weights: ReLU leaves nothing
    (tmp_path / "labels.txt").write_text("bright\ndark\n")
    Image.fromarray(img).save(tmp_path / "x.png")
    res = runner.invoke(app, ["explain", str(path), str(tmp_path / "x.png"), "--labels", str(tmp_path / "labels.txt"),
                              "--out", str(tmp_path / "gc"), "--json"])
    assert res.exit_code == 0, res.output
    e = json.loads(res.stdout)["images"][0]["keras_gradcam"]
    assert e["method"] == "gradcam" and e["label"] == "bright" and np.argmax(e["grid"]) == 2 * 7 + 4
    assert (tmp_path / "gc" / e["overlay"]).is_file()


@pytest.mark.parametrize("args,words", [
    (["--patch", "0"], ["--patch 0"]),
    (["--patch", "32", "--stride", "40"], ["--stride 40"]),
    (["--fill", "300"], ["--fill 300"]),
    (["--fill", "gray"], ["--fill gray"]),
    (["--border", "0.6"], ["--border 0.6"]),
    (["--class", "omega"], ["--class omega", "alpha"]),
    (["--method", "gradcam"], ["--method gradcam", ".keras"]),
    (["--method", "shap"], ["--method shap"]),
])
def test_bad_options_are_one_line_errors(run_dir, tiny_data, args, words):
    img = next((tiny_data / "test" / "alpha").glob("*.png"))
    res = runner.invoke(app, ["explain", str(run_dir / "two_conv" / "int8.tflite"), str(img), *args,
                              "--out", str(run_dir / "bad")])
    assert_clean_error(res, *words)


def test_bad_files_are_named(run_dir, tiny_data, tmp_path):
    model = str(run_dir / "two_conv" / "int8.tflite")
    good = next((tiny_data / "test" / "alpha").glob("*.png"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    notes = tmp_path / "notes.tflite"
    notes.write_text("not a model")
    assert_clean_error(runner.invoke(app, ["explain", str(tmp_path / "missing.tflite"), str(good)]), "missing.tflite",
                       "not found")
    assert_clean_error(runner.invoke(app,
                                     ["explain", model, str(good), "--compare", str(notes), "--out",
                                      str(tmp_path / "o")]),
                       "notes.tflite", "TFL3")
    res = runner.invoke(app, ["explain", model, str(broken), str(good), "--patch", "112", "--stride", "112",
                              "--out", str(tmp_path / "o")])
    assert_clean_error(res, "broken.png", "1 of 2 images")
    assert len(json.loads((tmp_path / "o" / "explain.json").read_text())["images"]) == 1  # the good one was explained
    assert_clean_error(runner.invoke(app, ["explain", str(tmp_path / "model.keras"), str(good)]), "model.keras",
                       "not found")


def test_bundle_with_compare_by_precision(run_dir, tiny_data, tmp_path):
    res = runner.invoke(app, ["export", "--run", str(run_dir), "--out", str(tmp_path / "b.zip")])
    assert res.exit_code == 0, res.output
    img = next((tiny_data / "test" / "delta").glob("*.png"))
    res = runner.invoke(app, ["explain", str(tmp_path / "b.zip"), str(img), "--compare", "float32", "--patch", "112",
                              "--stride", "112", "--out", str(tmp_path / "ex"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [m["key"] for m in doc["models"]] == ["int8", "float32"] and doc["models"][1]["path"] == "float32"
    assert "vs_int8" in doc["images"][0]["float32"]
    res = runner.invoke(app,
                        ["explain", str(tmp_path / "b.zip"), str(img), "--compare", "int16", "--out",
                         str(tmp_path / "ex")])
    assert_clean_error(res, "no two_conv/int16.tflite")
