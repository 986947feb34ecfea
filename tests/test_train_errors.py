"""Bad input to `cxredge train`: one line naming the file or option, exit 1, nothing half-written."""
from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from cxredge.cli.main import app

pytest.importorskip("cxredge.keras")

runner = CliRunner()
FAST = ["--alpha", "0.25", "--weights", "none", "--epochs", "1", "--variant", "fc"]


def fails(*args, match: str):
    result = runner.invoke(app, ["train", *map(str, args)])
    assert result.exit_code == 1, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert "error:" in text and match in text, text
    return result


def test_missing_folder(tmp_path):
    fails("--data", tmp_path / "nope", "--out", tmp_path / "r", *FAST, match="folder not found")


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    fails("--data", tmp_path / "empty", "--out", tmp_path / "r", *FAST, match="no class folders")


def test_one_class(tiny_data_copy, tmp_path):
    for split in ("train", "val", "test"):
        for cls in ("beta", "gamma", "delta"):
            shutil.rmtree(tiny_data_copy / split / cls)
    fails("--data", tiny_data_copy, "--out", tmp_path / "r", *FAST, match="at least 2 classes")


def test_class_folders_differ_between_splits(tiny_data_copy, tmp_path):
    (tiny_data_copy / "test" / "delta").rename(tiny_data_copy / "test" / "epsilon")
    fails("--data", tiny_data_copy, "--out", tmp_path / "r", *FAST, match="class folders differ")


def test_corrupt_image_is_named_and_skip_bad_skips_it(tiny_data_copy, tmp_path):
    bad = tiny_data_copy / "train" / "beta" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8)
    fails("--data", tiny_data_copy, "--out", tmp_path / "r", *FAST, match="broken.png")
    assert not (tmp_path / "r").exists()  # nothing written on failure
    result = runner.invoke(app, ["train", "--data", str(tiny_data_copy), "--out", str(tmp_path / "r"), "--skip-bad",
                                 *FAST])
    assert result.exit_code == 0, result.output
    assert "skipped 1 unreadable" in " ".join(result.output.split())
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run["skipped_images"] == 1 and run["skipped"][0].endswith("broken.png")
    assert run["data"]["counts"]["train"]["beta"] == 9  # listed, but 8 trained on
    assert run["results"]["fc"]["params_trainable"] > 0


def test_leakage_is_warned_with_a_count(tiny_data_copy, tmp_path):
    for i in range(2):
        shutil.copy(tiny_data_copy / "train" / "alpha" / f"alpha_train_{i}.png",
                    tiny_data_copy / "test" / "alpha" / f"leaked_{i}.png")
    result = runner.invoke(app, ["train", "--data", str(tiny_data_copy), "--out", str(tmp_path / "r"), *FAST])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "leakage: 2 image(s)" in text and "train/test: 2" in text
    assert json.loads((tmp_path / "r" / "run.json").read_text())["leakage"] == {"train/test": 2}


@pytest.mark.parametrize("option,value,match", [
    ("--variant", "three_conv", "--variant three_conv"),
    ("--alpha", "0.6", "--alpha 0.6"),
    ("--weights", "missing.h5", "--weights missing.h5"),
    ("--strategy", "tpu", "--strategy tpu"),
    ("--class-weight", "inverse", "--class-weight inverse"),
    ("--epochs", "0", "--epochs 0"),
    ("--pixel-noise", "-1", "--pixel-noise -1"),
])
def test_bad_options_name_the_option(tiny_data, tmp_path, option, value, match):
    args = ["--data", tiny_data, "--out", tmp_path / "r", "--weights", "none", "--alpha", "0.25", option, value]
    fails(*args, match=match)
    assert not (tmp_path / "r").exists()


def test_bundled_weights_need_alpha_075(tiny_data, tmp_path):
    fails("--data", tiny_data, "--out", tmp_path / "r", "--alpha", "0.5", match="--weights bundled")
