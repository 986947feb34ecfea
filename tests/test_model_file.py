"""Issue 22 cause 1: a model file never runs code (HDF5 Lambda bytecode, foreign modules in config.json)."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from conftest import invoke

pytestmark = pytest.mark.slow


def _lambda_model(marker):
    from cxredge.keras import keras

    marker = str(marker)

    inp = keras.Input((224, 224, 3))
    x = keras.layers.GlobalAveragePooling2D()(inp)
    x = keras.layers.Lambda(lambda t: (open(marker, "w").write("ran"), t)[1])(x)
    out = keras.layers.Dense(2, activation="softmax")(x)
    return keras.Model(inp, out)


def _plain_model():
    from cxredge.keras import keras

    inp = keras.Input((224, 224, 3))
    x = keras.layers.GlobalAveragePooling2D()(inp)
    return keras.Model(inp, keras.layers.Dense(2, activation="softmax")(x))


def _explain(tmp_path, model):
    img = tmp_path / "x.png"
    Image.fromarray(np.full((224, 224), 90, np.uint8)).save(img)
    (tmp_path / "labels.txt").write_text("a\nb\n")
    return invoke("explain", model, img, "--labels", tmp_path / "labels.txt", "--out", tmp_path / "ex")


def test_hdf5_named_keras_with_lambda_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "PWNED"
    h5 = tmp_path / "evil.h5"
    _lambda_model(marker).save(h5, save_format="h5")
    marker.unlink()  # building the model ran the Lambda once, here, on purpose
    evil = tmp_path / "model.keras"
    h5.rename(evil)
    res = _explain(tmp_path, evil)
    assert res.exit_code != 0
    assert "HDF5" in res.output and "model.keras" in res.output
    assert not marker.exists()


def test_zip_with_lambda_or_foreign_module_is_refused(tmp_path):
    from cxredge.errors import CxrError
    from cxredge.model_file import check_model_file, load_keras_model

    good = tmp_path / "good.keras"
    _plain_model().save(good, save_format="keras")
    assert load_keras_model(good).output_shape == (None, 2)  # our own format still loads
    with zipfile.ZipFile(good) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    config = json.loads(members["config.json"])

    def variant(name, mutate):
        cfg = json.loads(json.dumps(config))
        mutate(cfg)
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as zf:
            for n, data in members.items():
                zf.writestr(n, json.dumps(cfg) if n == "config.json" else data)
        return path

    def foreign(cfg):
        cfg["config"]["layers"][1]["module"] = "os"

    def lam(cfg):
        cfg["config"]["layers"][1]["class_name"] = "Lambda"

    for name, mutate, words in [("foreign.keras", foreign, "module 'os'"), ("lambda.keras", lam, "Lambda")]:
        path = variant(name, mutate)
        with pytest.raises(CxrError, match=words):
            check_model_file(path)
    (tmp_path / "junk.keras").write_bytes(b"not a model")
    with pytest.raises(CxrError, match="junk.keras: not a Keras .keras archive"):
        check_model_file(tmp_path / "junk.keras")


def test_quantize_refuses_an_hdf5_model_in_the_run(tmp_path, tiny_data):
    from conftest import TINY_CLASSES

    run = tmp_path / "run"
    (run / "fc").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"classes": sorted(TINY_CLASSES), "data": {"path": str(tiny_data)}}))
    marker = tmp_path / "PWNED"
    _lambda_model(marker).save(run / "fc" / "evil.h5", save_format="h5")
    marker.unlink()
    (run / "fc" / "evil.h5").rename(run / "fc" / "model.keras")
    res = invoke("quantize", "--run", run, "--variant", "fc", "--mode", "float32")
    assert res.exit_code != 0 and "HDF5" in res.output, res.output
    assert not marker.exists()
