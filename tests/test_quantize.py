"""cxredge quantize on a tiny model: every mode, the float-op check, manifest round trip, bad inputs.

One module-scoped CLI run (alpha 0.25, random weights, 8 calibration images, QAT 1 epoch on 8 images)
produces every model; the other tests reuse it or copy its run dir.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cxredge.cli.main import app
from cxredge.convert.opcheck import float_ops, require_integer_only
from cxredge.errors import CxrError

runner = CliRunner()
MODES = ("float32", "int8", "float16", "dynamic", "qat_int8", "int8_fallback")


def make_run(run_dir: Path, data: Path, variant: str = "fc") -> Path:
    from cxredge.edge.data.dataset import scan
    from cxredge.keras import keras
    from cxredge.train.variants import build_model

    keras.utils.set_random_seed(0)
    ds = scan(data)
    model = build_model(variant, len(ds.classes), alpha=0.25, weights=None)
    (run_dir / variant).mkdir(parents=True, exist_ok=True)
    model.save(run_dir / variant / "model.keras")
    run = {"format": "cxredge-run/1", "classes": list(ds.classes), "alpha": 0.25, "weights": "none",
           "variants": [variant], "data": {**ds.describe(), "sha256": "test"}}
    (run_dir / "run.json").write_text(json.dumps(run))
    return run_dir


def invoke(*args: str):
    return runner.invoke(app, ["quantize", *args])


@pytest.fixture(scope="module")
def full_run(tiny_data, tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("qrun"), tiny_data)
    res = invoke("--run", str(run), "--mode", "int8,float16,dynamic,qat", "--calibration-size", "8", "--qat-epochs",
                 "1",
                 "--qat-images", "8", "--debug", "--float-fallback", "1")
    assert res.exit_code == 0, res.output
    return run


def sidecar(run: Path, precision: str) -> dict:
    return json.loads((run / "fc" / f"{precision}.json").read_text())


def tmp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_every_mode_written_with_sidecar(full_run):
    for precision in MODES:
        data = (full_run / "fc" / f"{precision}.tflite").read_bytes()
        side = sidecar(full_run, precision)
        assert side["format"] == "cxredge-sidecar/1" and side["precision"] == precision
        assert side["size_bytes"] == len(data)
        assert side["labels"] == ["alpha", "beta", "delta", "gamma"]
        assert side["validation"]["n"] == 16 and 0 <= side["validation"]["agreement"] <= 1
    assert sidecar(full_run, "float32")["validation"]["max_abs_dprob"] <= 1e-4
    sizes = {p: sidecar(full_run, p)["size_bytes"] for p in MODES}
    assert sizes["int8"] < 0.35 * sizes["float32"] and sizes["float16"] < 0.6 * sizes["float32"]
    assert not tmp_files(full_run)


@pytest.mark.parametrize("precision", ["int8", "qat_int8", "int8_fallback"])
def test_integer_models_take_raw_uint8_pixels(full_run, precision):
    side = sidecar(full_run, precision)
    assert side["input"]["dtype"] == "uint8"
    assert side["input"]["scale"] == 1.0 and side["input"]["zero_point"] == 0
    assert side["output"]["dtype"] == "uint8" and side["output"]["scale"] == pytest.approx(1 / 256)
    assert side["calibration"]["manifest"] == "calibration/train_n8_seed0.txt"
    assert side["calibration"]["sha256"] and side["calibration"]["size"] == 8


def test_int8_has_no_float_op_and_dynamic_fails_the_check(full_run):
    int8 = (full_run / "fc" / "int8.tflite").read_bytes()
    assert float_ops(int8) == []
    require_integer_only(int8, "int8")
    for precision in ("qat_int8",):
        assert float_ops((full_run / "fc" / f"{precision}.tflite").read_bytes()) == []
    dynamic = (full_run / "fc" / "dynamic.tflite").read_bytes()
    assert float_ops(dynamic)
    with pytest.raises(CxrError, match=r"op\(s\) compute in float"):
        require_integer_only(dynamic, "dynamic.tflite")


def test_float_fallback_keeps_exactly_the_named_layers_in_float(full_run):
    side = sidecar(full_run, "int8_fallback")
    fb = side["conversion"]["fallback"]
    assert fb["k"] == 1 and len(fb["denylisted_nodes"]) == 1
    int8 = sidecar(full_run, "int8")
    assert fb["size_cost_bytes"] == side["size_bytes"] - int8["size_bytes"]
    assert fb["agreement_gain"] == pytest.approx(side["validation"]["agreement"] - int8["validation"]["agreement"])
    data = (full_run / "fc" / "int8_fallback.tflite").read_bytes()
    computing = [op for op in float_ops(data) if op.name not in ("QUANTIZE", "DEQUANTIZE")]
    assert [op.output for op in computing] == fb["denylisted_nodes"]
    with pytest.raises(CxrError):
        require_integer_only(data, "fallback")  # without the allow-list it is not full-integer
    report = json.loads((full_run / "fc" / "int8_debug.json").read_text())
    assert report["layers"][0]["tensor"] == fb["denylisted_nodes"][0]
    errors = [r["rmse_over_scale"] for r in report["layers"]]
    assert errors == sorted(errors, reverse=True)
    assert debug_short(fb["denylisted_nodes"][0]) in (full_run / "fc" / "int8_debug.md").read_text()


def debug_short(tensor: str) -> str:
    from cxredge.convert.debug import short_name

    return short_name(tensor)


def test_manifest_round_trip_gives_identical_bytes(full_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    before = (run / "fc" / "int8.tflite").read_bytes()
    (run / "fc" / "int8.tflite").unlink()
    res = invoke("--run", str(run), "--mode", "int8", "--calibration", str(run / "calibration" / "train_n8_seed0.txt"))
    assert res.exit_code == 0, res.output
    assert (run / "fc" / "int8.tflite").read_bytes() == before


def test_int8_models_are_bias_corrected_unless_asked_not_to(full_run, tmp_path):
    for precision in ("int8", "int8_fallback"):
        bc = sidecar(full_run, precision)["conversion"]["bias_correction"]
        assert bc["images"] == 8 and bc["layers"] > 0
    # a layer kept in float has a float bias: it is left alone
    fb_layers = sidecar(full_run, "int8_fallback")["conversion"]["bias_correction"]["layers"]
    assert fb_layers <= sidecar(full_run, "int8")["conversion"]["bias_correction"]["layers"]
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    res = invoke("--run", str(run), "--mode", "int8", "--calibration", str(run / "calibration" / "train_n8_seed0.txt"),
                 "--no-bias-correction")
    assert res.exit_code == 0, res.output
    assert sidecar(run, "int8")["conversion"]["bias_correction"] is None
    plain, corrected = (run / "fc" / "int8.tflite").read_bytes(), (full_run / "fc" / "int8.tflite").read_bytes()
    assert plain != corrected
    assert float_ops(plain) == []


@pytest.fixture()
def copy_run(full_run, tiny_data_copy, tmp_path):
    """The tiny run with its models, pointing at a writable copy of the data."""
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    doc = json.loads((run / "run.json").read_text())
    doc["data"]["path"] = str(tiny_data_copy)
    (run / "run.json").write_text(json.dumps(doc))
    manifest = run / "calibration" / "train_n8_seed0.txt"
    text = manifest.read_text().replace(str(full_run_data(full_run)), str(tiny_data_copy))
    manifest.write_text(text)
    return run, tiny_data_copy, manifest


def full_run_data(run: Path) -> str:
    return json.loads((run / "run.json").read_text())["data"]["path"]


def first_listed(manifest: Path) -> str:
    return next(line for line in manifest.read_text().splitlines() if not line.startswith("#")).split("\t")[0]


def break_missing(run, data, manifest):
    (data / first_listed(manifest)).unlink()
    return ["--calibration", str(manifest)], "is missing"


def break_changed(run, data, manifest):
    path = data / first_listed(manifest)
    path.write_bytes(path.read_bytes() + b"\0")
    return ["--calibration", str(manifest)], "sha256 mismatch"


def break_classes(run, data, manifest):
    bad = run / "bad.txt"
    bad.write_text(manifest.read_text().replace("# classes: alpha,beta,delta,gamma", "# classes: a,b,c,d"))
    return ["--calibration", str(bad)], "do not match the run"


def break_size(run, data, manifest):
    return ["--calibration-size", "40"], "larger than the train split"


@pytest.mark.parametrize("breaker", [break_missing, break_changed, break_classes, break_size])
def test_bad_input_one_line_error_and_nothing_touched(copy_run, breaker):
    run, data, manifest = copy_run
    args, message = breaker(run, data, manifest)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    res = invoke("--run", str(run), "--mode", "int8", *args)
    assert res.exit_code == 1
    assert message in res.output and "Traceback" not in res.output
    errors = [line for line in res.output.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0]  # one line (progress bars aside)
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before  # no model, sidecar or manifest written or changed
    assert not tmp_files(run)


def test_failure_during_conversion_keeps_previous_models(copy_run, monkeypatch):
    """The new float32 file fails validation while it is still a temp file: nothing is replaced."""
    from cxredge.convert import validate

    run, _, _ = copy_run
    before = {p: p.read_bytes() for p in (run / "fc").iterdir() if p.suffix in (".tflite", ".json")}

    def failing(path, precision, ref, progress=None):
        assert Path(path).name.endswith(".tmp") and Path(path).is_file()
        raise CxrError(f"{precision}.tflite: simulated validation failure")

    monkeypatch.setattr(validate, "validate", failing)
    res = invoke("--run", str(run), "--mode", "int8", "--calibration-size", "8")
    assert res.exit_code == 1 and "simulated validation failure" in res.output
    assert {p: p.read_bytes() for p in before} == before  # int8.tflite, float32.tflite, sidecars intact
    assert not tmp_files(run)


def test_float32_tolerance_is_enforced(full_run, tiny_data):
    from cxredge.convert import validate
    from cxredge.edge.data.dataset import load_split, scan

    loaded = load_split(scan(tiny_data), "val")
    path = full_run / "fc" / "float32.tflite"
    probs = validate.run_tflite(path, loaded.x)
    ref = validate.Reference("val", loaded.x, loaded.y, probs, ("alpha", "beta", "delta", "gamma"))
    assert validate.validate(path, "float32", ref)["max_abs_dprob"] == 0.0
    off = validate.Reference("val", loaded.x, loaded.y, probs + 2e-4, ref.classes)
    with pytest.raises(CxrError, match="exceeds 1e-04"):
        validate.validate(path, "float32", off)


def test_input_scale_is_exactly_one_or_it_fails(tiny_data, monkeypatch):
    """A calibration set without 0 and 255 pixels gets the range anchor; without it, conversion fails.
    (A small conv net with the cxredge input contract keeps this test fast.)"""
    from cxredge.convert import quantize
    from cxredge.edge.data.dataset import load_split, scan
    from cxredge.keras import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((224, 224, 3))
    h = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inp)
    h = keras.layers.Conv2D(4, 3, strides=8, activation="relu")(h)
    out = keras.layers.Dense(4, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inp, out)
    x = np.clip(load_split(scan(tiny_data), "train", limit=4).x, 30, 200)
    data = quantize.quantize_calibrated(quantize.calibrate(model, x), "int8")
    quantize.check_io(data, "int8", "ok")  # scale 1.0, zero point 0, int8 out
    monkeypatch.setattr(quantize, "input_range_anchor", lambda x: None)
    with pytest.raises(CxrError, match="need scale 1.0 and zero point 0"):
        quantize.quantize_calibrated(quantize.calibrate(model, x), "int8")


def test_qat_keeps_frozen_layers_frozen(tiny_data):
    from cxredge.convert.qat import QatSettings, fine_tune
    from cxredge.edge.data.dataset import load_split, scan
    from cxredge.keras import keras
    from cxredge.train.variants import build_model

    keras.utils.set_random_seed(0)
    model = build_model("two_conv", 4, alpha=0.25, weights=None)
    x = load_split(scan(tiny_data), "train", limit=8).x
    # random-init weights give a near-uniform softmax that equals its own distillation target (zero
    # gradient): a fixed output bias breaks that symmetry so the trainable tail has something to learn.
    model.get_layer("head_out").bias.assign(np.array([2.0, -1.0, 0.5, -1.5], dtype=np.float32))
    frozen = model.get_layer("conv_pw_12").kernel.numpy().copy()
    tail = {n: model.get_layer(n).get_weights() for n in ("conv_preds", "head_fc1", "head_fc2", "head_out")}
    qat, info = fine_tune(model, x, QatSettings(epochs=1, images=8, learning_rate=1e-2, batch_size=4))
    names = {w.name for w in qat.trainable_weights}
    assert "conv_pw_12/kernel:0" not in names and "conv1/kernel:0" not in names
    assert {"conv_pw_13/kernel:0", "conv_preds/kernel:0", "head_out/kernel:0"} <= names
    weights = {w.name: w.numpy() for w in qat.weights}
    assert np.array_equal(weights["conv_pw_12/kernel:0"], frozen)
    changed = [n for n, ws in tail.items() for i, w in enumerate(ws)
               if not np.array_equal(weights[f"{n}/{('kernel', 'bias')[i]}:0"], w)]
    assert changed  # the trainable tail did train, so "frozen stays frozen" is not vacuous
    assert info["trainable_params"] == sum(int(np.prod(w.shape)) for w in qat.trainable_weights)


def test_refit_changes_only_the_head_of_a_copy():
    from cxredge.convert.refit import RefitSettings, refit_head
    from cxredge.keras import keras
    from cxredge.train.variants import build_model

    keras.utils.set_random_seed(0)
    model = build_model("fc", 4, alpha=0.25, weights=None)
    before = [w.copy() for w in model.get_weights()]
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(32, 1000)).astype(np.float32)
    teacher = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 32)]
    clone, info = refit_head(model, feats, teacher, RefitSettings(epochs=5, learning_rate=1e-3, batch_size=8))
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # the float model is untouched
    for name in ("conv1", "conv_pw_13", "conv_preds"):
        assert all(np.array_equal(a, b) for a, b in zip(clone.get_layer(name).get_weights(),
                                                        model.get_layer(name).get_weights()))
    assert not np.array_equal(clone.get_layer("head_out").get_weights()[0],
                              model.get_layer("head_out").get_weights()[0])
    assert info["distill_loss"][-1] < info["distill_loss_before"]


def test_every_sidecar_carries_the_ood_reference_of_the_val_split(full_run, tiny_data):
    from cxredge.edge.data.dataset import load_split, scan
    from cxredge.edge.ood.guard import OOD_FORMAT, build_reference, reference_from_dict

    val = load_split(scan(tiny_data), "val")
    expected = build_reference(val.x).to_dict()
    for precision in MODES:
        doc = sidecar(full_run, precision)["ood"]
        assert doc["format"] == OOD_FORMAT and doc["split"] == "val" and doc["n"] == len(val.y) == 16
        assert doc == json.loads(json.dumps(expected))  # the same reference, from the same val images
        ref, why = reference_from_dict(doc)
        assert why is None and ref.threshold >= 3.5 and ref.val_flagged <= 0.01 * ref.n


def test_int8_models_take_pixels_exactly_unless_asked_not_to(full_run, tmp_path):
    for precision in ("int8", "int8_fallback"):
        assert sidecar(full_run, precision)["conversion"]["exact_input"] is True
    assert "exact_input" not in sidecar(full_run, "float32")["conversion"]
    run = int8_again(full_run, tmp_path, "--no-exact-input")
    assert sidecar(run, "int8")["conversion"]["exact_input"] is False


def int8_again(full_run: Path, tmp_path: Path, *options: str) -> Path:
    """A copy of the run, its int8 model made again from the same manifest with `options`: other bytes."""
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    res = invoke("--run", str(run), "--mode", "int8", "--calibration", str(run / "calibration" / "train_n8_seed0.txt"),
                 *options)
    assert res.exit_code == 0, res.output
    assert (run / "fc" / "int8.tflite").read_bytes() != (full_run / "fc" / "int8.tflite").read_bytes()
    return run


def test_int8_models_are_equalized_unless_asked_not_to(full_run, tmp_path):
    for precision in ("int8", "int8_fallback"):
        eq = sidecar(full_run, precision)["conversion"]["equalize"]
        assert eq["pairs"] == 3 and eq["pairs_equalized"] == 3 and eq["margin"] == 1.0
        assert [la["relu"] for la in eq["layers"]] == ["conv1_relu", "conv_dw_1_relu", "conv_pw_1_relu"]
    assert "equalize" not in sidecar(full_run, "float32")["conversion"]
    run = int8_again(full_run, tmp_path, "--no-equalize")
    assert sidecar(run, "int8")["conversion"]["equalize"] is None
    res = invoke("--run", str(run), "--mode", "int8", "--equalize-pairs", "-1")
    assert res.exit_code != 0 and "--equalize-pairs -1" in res.output
    res = invoke("--run", str(run), "--mode", "int8", "--equalize-margin", "0.9")
    assert res.exit_code != 0 and "--equalize-margin 0.9" in res.output


def test_refit_reads_int8_features_without_litert_debug_warnings(edge_models, tiny_data):
    import warnings

    from cxredge.convert.refit import int8_features
    from cxredge.edge.data.dataset import load_split, scan

    x = load_split(scan(tiny_data), "val").x[:3]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        feats = int8_features(edge_models["int8"].read_bytes(), x)
    assert feats.shape == (3, 1000) and np.isfinite(feats).all() and feats.std() > 0
    assert not [w for w in caught if "preserve_all_tensors" in str(w.message)]  # cxredge quantize --mode refit


@pytest.mark.parametrize("width", [80, 150])
def test_results_table_fits_the_terminal_and_never_cuts_a_name(width):
    from rich.console import Console

    from cxredge.cli.quantize import results_table

    rows = [{"variant": v, "precision": p, "size_bytes": size, "agreement": 0.981, "macro_f1": 0.8054,
             "delta_macro_f1": -0.0084, "max_abs_dprob": 0.267, "tied_at_max": 7}
            for v in ("two_conv", "ensemble") for p, size in (("float32", 16_534_800), ("int8_fallback", 4_440_000),
                                                             ("int8_refit", 4_440_000))]
    console = Console(width=width, record=True, color_system=None)
    console.print(results_table(rows, "test", width))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= width
    assert "…" not in text
    for name in ("two_conv", "ensemble", "int8_fallback", "int8_refit", "98.1%", "-0.84 pt", "4.44 MB"):
        assert name in text, (name, text)
    assert ("max |dprob|" in text) == (width >= 100)  # the compact table drops it and names quantize.json
