"""predict names the model that answered, marks near-ties, and has an exit status for untrustworthy input
(issue 24 item 5); its table fits 80 columns without cutting a number (item 6). Each failed on the previous main."""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxredge.cli.main import app
from cxredge.edge.data.dataset import load_split, scan
from cxredge.edge.ood import guard as ood
from cxredge.io import sha256_file
from cxredge.paths import SAMPLE_DATA
from edge_fixtures import make_run
from ood_images import flat_png, uniform_noise_png

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def terminal(*args, columns: int) -> subprocess.CompletedProcess:
    """`python -m cxredge ARGS` as a user runs it, in a terminal COLUMNS wide."""
    env = {**os.environ, "COLUMNS": str(columns), "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}
    return subprocess.run([sys.executable, "-m", "cxredge", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def run_dir(edge_models, tiny_data, tmp_path_factory):
    """fc/* sidecars carry an OOD reference (of the sample's val split); two_conv/* have none."""
    run = make_run(tmp_path_factory.mktemp("predict_run"), edge_models, tiny_data)
    ref = ood.build_reference(load_split(scan(SAMPLE_DATA), "val").x).to_dict()
    for side in (run / "fc").glob("*.json"):
        if side.stem in ("float32", "int8"):
            side.write_text(json.dumps({**json.loads(side.read_text()), "ood": ref}))
    return run


@pytest.fixture(scope="module")
def images(tiny_data) -> list[Path]:
    return sorted((tiny_data / "test").rglob("*.png"))


@pytest.fixture(scope="module")
def non_xrays(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("non_xrays")
    return [flat_png(d / "flat.png", size=300), uniform_noise_png(d / "noise.png")]


def predict_json(*args):
    res = runner.invoke(app, ["predict", *map(str, args), "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_the_model_that_answered_is_named(run_dir, images, tmp_path):
    model = run_dir / "two_conv" / "float32.tflite"
    doc = predict_json(model, images[0])
    assert doc["model"] == {"path": str(model), "member": None, "variant": "two_conv", "precision": "float32",
                            "sha256": sha256_file(model)}
    res = terminal("predict", model, images[0], columns=120)
    assert f"two_conv/float32 sha256 {sha256_file(model)[:12]}" in res.stdout, res.stdout + res.stderr
    # in a bundle: the member that answered, not only the zip's name
    bundle = tmp_path / "b.zip"
    res = runner.invoke(app, ["export", "--run", str(run_dir), "--out", str(bundle)])
    assert res.exit_code == 0, res.output
    doc = predict_json(bundle, images[0], "--variant", "fc", "--precision", "int8")
    with zipfile.ZipFile(bundle) as zf:
        inner = zf.read("fc/int8.tflite")
    assert doc["model"]["member"] == "fc/int8.tflite" and doc["model"]["variant"] == "fc"
    assert doc["model"]["precision"] == "int8" and doc["model"]["sha256"] == hashlib.sha256(inner).hexdigest()


def test_near_ties_are_marked_with_a_threshold_that_can_be_set(run_dir, images):
    model = run_dir / "two_conv" / "float32.tflite"
    doc = predict_json(model, *images)
    assert doc["margin_threshold"] == 0.10
    margins = []
    for p in doc["predictions"]:
        top2 = sorted(p["probabilities"].values(), reverse=True)[:2]
        assert p["margin"] == pytest.approx(top2[0] - top2[1], abs=1e-4)
        assert p["low_margin"] == (p["margin"] < 0.10)
        margins.append(p["margin"])
    cut = sorted(margins)[len(margins) // 2]  # a threshold between the observed margins: both kinds appear
    doc = predict_json(model, *images, "--margin", cut)
    assert {p["low_margin"] for p in doc["predictions"]} == {True, False}
    assert all(p["low_margin"] == (p["margin"] < cut) for p in doc["predictions"])
    res = terminal("predict", model, *images, "--margin", cut, columns=120)
    low = sum(p["low_margin"] for p in doc["predictions"])
    assert res.returncode == 0 and len(re.findall(r"\d\.\d{3} low", res.stdout)) == low, res.stdout
    assert f"{low} of {len(images)} predictions are near-ties" in " ".join(res.stdout.split())
    for bad in ("-0.1", "1", "nan"):
        res = runner.invoke(app, ["predict", str(model), str(images[0]), "--margin", bad])
        assert res.exit_code in (1, 2) and "--margin" in res.output and "Traceback" not in res.output


def test_strict_exits_3_when_no_input_can_be_trusted(run_dir, images, non_xrays):
    guarded = run_dir / "fc" / "int8.tflite"
    # every input out of distribution: a warning line and exit 0; --strict: one error line and exit 3
    res = runner.invoke(app, ["predict", str(guarded), *map(str, non_xrays)])
    assert res.exit_code == 0 and "every input (2 of 2) looks unlike" in " ".join(res.stdout.split())
    res = runner.invoke(app, ["predict", str(guarded), *map(str, non_xrays), "--strict", "--json"])
    assert res.exit_code == 3, res.output
    assert len(json.loads(res.stdout)["predictions"]) == 2  # the answers are still printed, then the status
    errors = [ln for ln in res.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and "every input (2 of 2) looks unlike" in errors[0] and "exit 3" in errors[0]
    # one real X-ray among them: exit 0 even with --strict
    xray = SAMPLE_DATA / "test" / "Bacterial_Pneumonia" / "person109_bacteria_513.png"  # in distribution (test_ood)
    res = runner.invoke(app, ["predict", str(guarded), str(xray), *map(str, non_xrays), "--strict"])
    assert res.exit_code == 0, res.output
    # no guard at all (a sidecar without `ood`): nothing can be checked, so --strict refuses too
    res = runner.invoke(app, ["predict", str(run_dir / "two_conv" / "int8.tflite"), str(images[0]), "--strict"])
    assert res.exit_code == 3 and "has no OOD guard" in res.stderr


def test_the_table_fits_80_columns_and_never_cuts_a_number(run_dir, images, tmp_path):
    long = ["Bacterial_Pneumonia", "COVID", "Normal", "Viral_Pneumonia"]
    (tmp_path / "labels.txt").write_text("\n".join(long))
    bare = tmp_path / "a_model_with_a_rather_long_file_name.tflite"
    bare.write_bytes((run_dir / "fc" / "int8.tflite").read_bytes())
    args = ["predict", str(bare), *map(str, images[:3]), "--labels", str(tmp_path / "labels.txt")]
    doc = predict_json(*args[1:])
    res = terminal(*args, columns=80)
    assert res.returncode == 0, res.stderr
    table = [ln for ln in res.stdout.splitlines() if re.search("[│┃┏┡└]", ln)]  # warnings wrap in the terminal
    assert len(table) > 5 and max(map(len, table)) <= 80 and "…" not in res.stdout, res.stdout
    for p in doc["predictions"]:  # each probability and margin is printed whole
        for v in [*p["probabilities"].values(), p["margin"]]:
            assert re.search(rf"(?<![\d.]){v:.3f}(?!\d)", res.stdout), (v, res.stdout)
