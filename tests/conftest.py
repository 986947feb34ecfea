"""Shared fixtures: a tiny synthetic chest-X-ray-like dataset (no downloads, seconds to make)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TINY_CLASSES = ("alpha", "beta", "gamma", "delta")
TINY_COUNTS = {"train": 8, "val": 4, "test": 4}


def invoke(*args):
    """`cxredge ARGS` in process; any exception other than a clean exit fails the test."""
    from typer.testing import CliRunner

    from cxredge.cli.main import app
    result = CliRunner().invoke(app, [*map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def read(path):
    import json
    return json.loads(Path(path).read_text())


def synth_image(label: int, idx: int, size: int = 224) -> np.ndarray:
    """A grayscale image whose coarse pattern depends on the class (learnable), plus seeded noise."""
    rng = np.random.default_rng(1000 * label + idx)
    yy, xx = np.mgrid[0:size, 0:size] / size
    pattern = [xx, yy, (xx + yy) / 2, np.abs(xx - 0.5) * 2][label % 4]
    img = 40 + 170 * pattern + rng.normal(0, 12, (size, size))
    img[:4, :4] = 0      # full dynamic range, as real films have
    img[-4:, -4:] = 255
    return np.clip(img, 0, 255).astype(np.uint8)


def make_dataset(root: Path, classes=TINY_CLASSES, counts=TINY_COUNTS, split_layout: bool = True) -> Path:
    for split, n in counts.items():
        for label, cls in enumerate(classes):
            folder = root / split / cls if split_layout else root / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                idx = i + {"train": 0, "val": 100, "test": 200}[split]
                Image.fromarray(synth_image(label, idx), "L").save(folder / f"{cls}_{split}_{i}.png")
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """DIR/{train,val,test}/{alpha,beta,gamma,delta}/*.png — 8/4/4 images per class."""
    return make_dataset(tmp_path_factory.mktemp("tiny_data"))


@pytest.fixture()
def tiny_data_copy(tmp_path) -> Path:
    """A fresh, writable copy of the tiny dataset, for tests that break it."""
    return make_dataset(tmp_path / "data")


@pytest.fixture(scope="session")
def edge_models(tiny_data, tmp_path_factory):
    """Tiny float32 / int8 .tflite models (tests/edge_fixtures.py), built once for the whole session."""
    from edge_fixtures import build_models

    return build_models(tmp_path_factory.getbasetemp() / "edge_models", tiny_data)
