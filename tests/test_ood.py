"""The OOD guard (cxredge/edge/ood/guard.py, ood_flags.py): its statistics, threshold, sidecar round trip, and
what predict / bench say about inputs that are not chest X-rays.

The reference is built from the bundled sample's val split (80 real X-rays), as `cxredge quantize` does
from a run's val split; the CLI tests put it into the sidecars of the tiny fixture models.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cxredge.cli.main import app
from cxredge.edge.data.dataset import load_split, scan
from cxredge.edge.data.images import load_image
from cxredge.edge.ood import guard as ood
from cxredge.paths import SAMPLE_DATA
from edge_fixtures import CLASSES, make_run
from ood_images import cmyk_scene_jpeg, flat_png, rgba_scene_png, uniform_noise_png

runner = CliRunner()
IN_DIST = SAMPLE_DATA / "test" / "Bacterial_Pneumonia" / "person109_bacteria_513.png"
EXPECTED = {"flat.png": "flat or low-contrast image", "scene_rgba.png": "colour image",
            "scene_cmyk.jpg": "colour image", "noise.png": "noise-like texture"}


@pytest.fixture(scope="module")
def sample_ref() -> ood.Reference:
    return ood.build_reference(load_split(scan(SAMPLE_DATA), "val").x)


@pytest.fixture(scope="module")
def non_xrays(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("non_xrays")
    return [flat_png(d / "flat.png", size=3000), rgba_scene_png(d / "scene_rgba.png"),
            cmyk_scene_jpeg(d / "scene_cmyk.jpg"), uniform_noise_png(d / "noise.png")]


# --- the statistics and the threshold ------------------------------------------------------------

def test_statistics_of_images_with_known_values():
    red = np.zeros((1, 64, 64, 3), np.uint8)
    red[..., 0] = 255
    halves = np.zeros((1, 64, 64, 3), np.uint8)
    halves[:, :, 32:] = 255
    checker = np.indices((64, 64)).sum(axis=0) % 2 * 255
    checker = np.repeat(checker[None, :, :, None], 3, axis=3).astype(np.uint8)
    flat = np.full((1, 64, 64, 3), 77, np.uint8)
    f = ood.features(np.concatenate([red, halves, checker, flat]), ood.grids(halves.mean(axis=3))[0])
    colour, contrast, edges, layout, flat_share = f.T
    assert colour[0] == pytest.approx(1.0) and colour[1:].max() == 0
    assert contrast[1] == pytest.approx(np.log(0.5 + ood.EPS)) and contrast[3] == pytest.approx(np.log(ood.EPS))
    assert edges[2] == pytest.approx(np.log(2 + ood.EPS))  # |neighbour difference| 255 over sd 127.5
    assert np.isnan(edges[3]) and np.isnan(layout[3])      # a flat image has neither
    assert layout[1] == pytest.approx(1.0)                 # an image matches its own grid
    assert flat_share[3] == 1.0 and flat_share[2] == 0.0


def test_threshold_is_the_conformal_quantile_with_a_floor():
    assert ood.conformal_threshold(np.arange(1, 1001)) == 991    # ceil(1001 * 0.99) = 991st of 1000
    assert ood.conformal_threshold(np.arange(1, 51) / 5) == 10.0  # n < 99: the largest val score
    assert ood.conformal_threshold(np.zeros(500)) == ood.MIN_THRESHOLD


def test_non_xrays_are_flagged_with_the_reason_and_real_xrays_are_not(sample_ref, non_xrays):
    for path in non_xrays:
        v = sample_ref.check(load_image(path))[0]
        assert not v.in_distribution and v.score > 2 * v.threshold, (path.name, v)
        assert v.reasons[0] == EXPECTED[path.name], (path.name, v.reasons)
    test = load_split(scan(SAMPLE_DATA), "test")   # real X-rays the reference never saw
    kept = [v.in_distribution for v in sample_ref.check(test.x)]
    assert sum(kept) >= 0.95 * len(kept)
    assert sample_ref.check(load_image(IN_DIST))[0].in_distribution


def test_reference_round_trip_and_version_tolerance(sample_ref, non_xrays):
    doc = json.loads(json.dumps(sample_ref.to_dict()))
    back, why = ood.reference_from_dict(doc)
    assert why is None and back == sample_ref   # every field survives JSON, to the last bit
    x = np.stack([load_image(p) for p in [IN_DIST, *non_xrays]])
    assert [v.in_distribution for v in back.check(x)] == [v.in_distribution for v in sample_ref.check(x)]
    val = load_split(scan(SAMPLE_DATA), "val").x   # read back from JSON, the val images are still all kept
    assert sum(not v.in_distribution for v in back.check(val)) == back.val_flagged == 0
    assert ood.reference_from_dict(None) == (None, ood.reference_from_dict(None)[1])
    assert "no `ood` reference" in ood.reference_from_dict(None)[1]
    assert "unknown format" in ood.reference_from_dict({**doc, "format": "cxredge-ood/9"})[1]
    assert "incomplete" in ood.reference_from_dict({k: v for k, v in doc.items() if k != "features"})[1]
    assert "malformed" in ood.reference_from_dict({**doc, "layout_template": [0.0] * 16})[1]


# --- predict and bench ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def guarded_run(edge_models, tiny_data, tmp_path_factory, sample_ref):
    """fc/* sidecars carry an `ood` reference (of the sample's val split); two_conv/* do not (older sidecars)."""
    run = make_run(tmp_path_factory.mktemp("ood_run"), edge_models, tiny_data)
    for side in (run / "fc").glob("*.json"):
        if side.name != "metrics.json" and side.name != "history.json":
            doc = json.loads(side.read_text())
            side.write_text(json.dumps({**doc, "ood": sample_ref.to_dict()}))
    return run


def test_predict_marks_non_xrays_in_json_and_in_the_table(guarded_run, non_xrays):
    model = str(guarded_run / "fc" / "int8.tflite")
    res = runner.invoke(app, ["predict", model, str(IN_DIST), *map(str, non_xrays), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["ood_guard"]["active"] and doc["ood_guard"]["n"] == 80
    preds = doc["predictions"]
    assert [p["in_distribution"] for p in preds] == [True, False, False, False, False]
    assert [p["ood"]["reasons"][0] for p in preds[1:]] == [EXPECTED[p.name] for p in non_xrays]
    assert "4 of 5 images look unlike" in res.stderr and "noise.png" in res.stderr
    res = runner.invoke(app, ["predict", model, str(IN_DIST), *map(str, non_xrays)])
    text = " ".join(res.stdout.split())
    assert res.exit_code == 0 and "unlike val" in text and "4 of 5 images look unlike" in text


def test_predict_without_an_ood_key_says_so_once_and_still_predicts(guarded_run, non_xrays):
    res = runner.invoke(app, ["predict", str(guarded_run / "two_conv" / "int8.tflite"), *map(str, non_xrays), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert (doc["ood_guard"] == {"active": False, "why": doc["ood_guard"]["why"]}
            and "no `ood`" in doc["ood_guard"]["why"])
    assert all(p["in_distribution"] is None and p["label"] in CLASSES for p in doc["predictions"])
    assert res.stderr.count("no OOD guard") == 1


def test_predict_help_describes_what_json_writes(guarded_run):
    from cxredge.cli.predict import JSON_HELP

    help_text = " ".join(re.sub("[│╭╮╰╯─]", " ", runner.invoke(app, ["predict", "--help"]).stdout).split())
    assert "one object per image" not in help_text and "Print one JSON object instead of a table" in help_text
    res = runner.invoke(app, ["predict", str(guarded_run / "fc" / "int8.tflite"), str(IN_DIST), "--json"])
    doc = json.loads(res.stdout)
    keys = re.search(r"\{([^}]*)\}", JSON_HELP).group(1).split(", ")
    assert set(keys) == set(doc)          # the help names every top-level key, and only those
    assert {"label", "probabilities", "in_distribution", "ood"} <= set(doc["predictions"][0])


def test_bench_counts_flagged_images_per_model(guarded_run, non_xrays, tmp_path):
    data = tmp_path / "data"
    picks = sorted((SAMPLE_DATA / "test" / "Bacterial_Pneumonia").glob("*.png"))[:8]
    for split in ("train", "val", "test"):
        for i, cls in enumerate(CLASSES):
            (data / split / cls).mkdir(parents=True)
            for p in picks[2 * i:2 * i + 2]:
                shutil.copy(p, data / split / cls / p.name)
    for p in non_xrays:
        shutil.copy(p, data / "test" / "alpha" / p.name)
    res = runner.invoke(app, ["bench", "--run", str(guarded_run), "--data", str(data), "--runs", "2", "--warmup", "0",
                              "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    block = json.loads((tmp_path / "out" / "bench.json").read_text())["ood"]
    assert block["n"] == 12 and block["guarded"] == ["fc/float32", "fc/int8"]
    assert block["unguarded"] == ["two_conv/float32", "two_conv/int8"]
    assert sorted(Path(f["image"]).name for f in block["flagged"]) == sorted(p.name for p in non_xrays)
    assert block["n_flagged"] == 4 and block["share"] == pytest.approx(4 / 12, abs=1e-4)
    assert block["reasons"] == {"colour image": 2, "flat or low-contrast image": 1, "noise-like texture": 1}
    assert block["per_model"]["fc/int8"]["n_flagged"] == 4 and "two_conv/int8" not in block["per_model"]
    out = " ".join(res.stdout.split())
    assert "ood guard: 4 of 12 images" in out and "no OOD guard for two_conv/float32, two_conv/int8" in out
    assert "ood guard: 4 of 12 images" in (tmp_path / "out" / "bench.md").read_text()
