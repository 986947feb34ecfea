"""One vocabulary (cxredge/vocab.py): every writer and parser of variant / precision / mode names agrees with it."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cxredge import vocab
from cxredge.edge.runtime.benchmark_model import model_name, parse

ROOT = Path(__file__).resolve().parent.parent


def _presets() -> list[str]:
    """The precisions convert/quantize.py writes, read from its source (no TensorFlow import needed)."""
    tree = ast.parse((ROOT / "cxredge" / "convert" / "quantize.py").read_text(encoding="utf-8"))
    names = [node.args[0].value for node in ast.walk(tree)
             if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Preset"
             and node.args and isinstance(node.args[0], ast.Constant)]
    assert len(names) >= 5, names
    return names


def test_every_quantize_preset_is_a_known_precision():
    presets = _presets()
    assert [p for p in presets if p not in vocab.PRECISIONS] == []
    assert set(vocab.MODE_PRECISION.values()) <= set(presets)  # every --mode writes a preset that exists


def test_modes_and_precisions_agree():
    assert set(vocab.MODE_PRECISION) == set(vocab.MODES)
    assert set(vocab.CALIBRATED_MODES) <= set(vocab.MODES)
    assert set(vocab.FLOAT_PRECISIONS) <= set(vocab.PRECISIONS)
    assert vocab.REFERENCE == vocab.PRECISIONS[0] == vocab.FLOAT_PRECISIONS[0]
    assert vocab.VARIANTS[:len(vocab.TRAIN_VARIANTS)] == vocab.TRAIN_VARIANTS
    assert vocab.TRAIN_VARIANTS[:len(vocab.STUDY_VARIANTS)] == vocab.STUDY_VARIANTS


def test_cli_choices_come_from_the_vocabulary():
    from cxredge.cli.quantize import MODE_CHOICES, parse_modes, parse_variants
    from cxredge.cli.train import VARIANT_CHOICES

    assert set(MODE_CHOICES) - {"all"} == set(vocab.MODES)
    assert set(parse_modes("all")) == set(vocab.MODES)
    assert set(VARIANT_CHOICES) - {"all"} == set(vocab.TRAIN_VARIANTS)
    assert parse_variants("all", None) == vocab.STUDY_VARIANTS
    assert parse_variants("ensemble,fc", None) == ("ensemble", "fc")


@pytest.mark.parametrize("graph, variant, precision", [
    ("/data/local/tmp/two_conv_int8_refit.tflite", "two_conv", "int8_refit"),
    ("two_conv_int8_fallback.tflite", "two_conv", "int8_fallback"),
    ("/tmp/fc_qat_int8.tflite", "fc", "qat_int8"),  # longest precision wins: not fc_qat / int8
    ("one_conv_float32.tflite", "one_conv", "float32"),
    ("/sdcard/cxredge/finetune/int8_refit.tflite", "finetune", "int8_refit"),
    ("/sdcard/x/int8_refit.tflite", "x", "int8_refit"),
])
def test_benchmark_model_names_every_precision(graph, variant, precision):
    assert model_name(graph) == (f"{variant}/{precision}", variant, precision)


def test_flat_name_without_a_precision_stays_whole():
    assert model_name("mobilenet.tflite") == ("mobilenet", "mobilenet", "mobilenet")


RUN = """Graph: [/data/local/tmp/{name}.tflite]
Num threads: [4]
count=50 first=9000 curr=9000 min=9000 max=9000 avg={avg} std=1
Inference timings in us: Init: 2000, First inference: 9000, Warmup (avg): {avg}, Inference (avg): {avg}
"""


def test_a_phone_run_of_a_refit_model_gets_its_speed_up():
    text = RUN.format(name="two_conv_float32", avg=30000) + RUN.format(name="two_conv_int8_refit", avg=10000)
    rows = parse(text, Path("phone.txt"))["results"]
    refit = next(r for r in rows if r["precision"] == "int8_refit")
    assert refit["variant"] == "two_conv"
    assert refit["speedup_vs_float32"] == pytest.approx(3.0)
