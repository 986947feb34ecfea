"""The on-disk feature cache (train/store.py, train/run.py _cache): resume after an interruption, reuse
by a later run, the marker protocol, the float16 decision. Backbone calls are counted at cache.forward."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from rich.console import Console

from cxredge.train.store import FeatureStore, Rows, float16_keeps
from conftest import make_dataset

pytest.importorskip("cxredge.keras")

COUNTS = {"train": 24, "val": 4, "test": 4}  # 96 train images: 3 batches of 32 per view


class Boom(RuntimeError):
    pass


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("cache_data"), counts=COUNTS)


@pytest.fixture()
def counted(monkeypatch):
    """Count the images the backbone runs on; raise Boom once `fail_after` batches have run."""
    from cxredge.train import cache, run

    state = {"images": 0, "batches": 0, "fail_after": None}
    real = cache.forward

    def forward(fn, x):
        if state["fail_after"] is not None and state["batches"] >= state["fail_after"]:
            raise Boom("injected interruption")
        state["batches"] += 1
        state["images"] += len(x)
        return real(fn, x)
    monkeypatch.setattr(cache, "forward", forward)
    monkeypatch.setattr(run, "CHUNK_BATCHES", 1)  # durable after every batch, so the test sees several chunks
    return state


def _train(data, out, cache_dir, **kw):
    from cxredge.train.run import train_run
    from cxredge.train.settings import TrainSettings

    settings = TrainSettings(**{"variants": ("fc",), "alpha": 0.25, "weights": "none", "epochs": 1, "patience": 0,
                                "audit": False, "cache_dir": str(cache_dir), **kw})
    return train_run(data, out, settings, Console(file=io.StringIO(), width=120))


def _cached(cache_dir) -> dict[str, np.ndarray]:
    (key_dir,) = [p for p in cache_dir.iterdir() if p.is_dir()]
    return {p.name: np.load(p) for p in sorted(key_dir.glob("*.npy"))}


def test_an_interrupted_feature_pass_resumes_where_it_stopped(data, tmp_path, counted):
    total = 2 * 96 + 16 + 16  # train (as is + mirrored), val, test
    counted["fail_after"] = 2  # 2 train batches made durable (float32, the default: no dtype probe)
    with pytest.raises(Boom):
        _train(data, tmp_path / "a", tmp_path / "cache")
    counted.update(fail_after=None, images=0, batches=0)
    _train(data, tmp_path / "a", tmp_path / "cache")
    assert counted["images"] == total - 64  # the 64 rows on disk were not run again
    counted.update(images=0)
    _train(data, tmp_path / "b", tmp_path / "fresh")  # an uninterrupted pass, for comparison
    assert counted["images"] == total  # every image
    resumed, fresh = _cached(tmp_path / "cache"), _cached(tmp_path / "fresh")
    assert resumed.keys() == fresh.keys() and len(resumed) == 4
    for name in fresh:
        np.testing.assert_array_equal(resumed[name], fresh[name])


def test_a_second_run_reuses_the_cache_without_the_backbone(tiny_data, tmp_path, counted):
    import json

    # random-init weights depend on the seed, ImageNet's do not; auto: float16 where it keeps the values
    real = {"alpha": 0.75, "weights": "bundled", "cache_dtype": "auto"}
    _train(tiny_data, tmp_path / "first", tmp_path / "cache", **real)
    assert counted["images"] == 32 + 2 * 32 + 16 + 16  # dtype probe, train x2 views, val, test
    counted.update(images=0)
    # another seed (the mirror view has no seed without pixel noise), and finetune's phase 1 (fc's cut)
    _train(tiny_data, tmp_path / "seed1", tmp_path / "cache", seed=1, **real)
    _train(tiny_data, tmp_path / "ft", tmp_path / "cache", variants=("finetune",), finetune_epochs=1, **real)
    assert counted["images"] == 0
    run = json.loads((tmp_path / "ft" / "run.json").read_text())
    assert run["feature_cache"]["forward_passes"] == 0 and run["feature_cache"]["bytes"] > 0
    assert run["feature_cache"]["dtypes"] == {"reshape_2": "float16"}  # ImageNet logits keep in float16
    _train(tiny_data, tmp_path / "noise", tmp_path / "cache", pixel_noise=2.0, **real)  # another view
    assert counted["images"] == 32  # only the noisy mirrored train view is computed


def test_the_marker_moves_only_after_a_commit(tmp_path):
    store = FeatureStore(tmp_path, {"k": 1})
    w = store.writer("train.v0.cut", (10, 3), "float16")
    w.write(0, np.ones((4, 3)))
    assert store.done("train.v0.cut", (10, 3)) == 0  # written, not yet durable
    w.commit()
    w.write(4, np.full((4, 3), 2.0))
    w.close()
    assert store.done("train.v0.cut", (10, 3)) == 4
    assert store.done("train.v0.cut", (11, 3)) == 0  # another shape is another array
    w = store.writer("train.v0.cut", (10, 3), "float16")  # resumes: keeps the durable rows
    w.write(4, np.full((6, 3), 3.0))
    w.commit()
    w.close()
    rows = Rows(store.path("train.v0.cut"))
    assert rows[:].dtype == np.float32 and rows[[0, 9]].tolist() == [[1.0] * 3, [3.0] * 3]
    assert np.load(store.path("train.v0.cut")).shape == (10, 3)  # a plain .npy anyone can np.load
    assert FeatureStore(tmp_path, {"k": 2}).dir != store.dir


def test_float16_is_kept_only_where_it_keeps_the_values():
    assert float16_keeps(np.linspace(-20, 20, 1000))  # logits
    assert float16_keeps(np.linspace(0, 6, 1000))  # ReLU6 activations
    assert not float16_keeps(np.linspace(-3e-16, 3e-16, 100))  # random-init logits: underflow
    assert not float16_keeps(np.array([1e5, 1.0]))  # overflow


def test_an_unwritable_cache_dir_is_a_one_line_error(tiny_data, tmp_path):
    from conftest import invoke

    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    result = invoke("train", "--data", tiny_data, "--out", tmp_path / "r", "--variant", "fc", "--alpha", "0.25",
                    "--weights", "none", "--epochs", "1", "--no-audit", "--cache-dir", blocker)
    assert result.exit_code != 0
    assert f"--cache-dir {blocker}: cannot write the feature cache there" in result.output
    assert "Traceback" not in result.output


def test_the_default_cache_is_exact(tiny_data, tmp_path):
    """float32 by default: the tail trains on the backbone's exact numbers (float16 moved test accuracy by up to
    1.3 pt at the same seed on chest_xray_4class, docs/scale.md), where auto would pick float16 for these logits."""
    _train(tiny_data, tmp_path / "run", tmp_path / "cache", alpha=0.75, weights="bundled")
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert set(run["feature_cache"]["dtypes"].values()) == {"float32"}
    metrics = json.loads((tmp_path / "run" / "fc" / "metrics.json").read_text())
    assert metrics["cache_dtype_max_abs_diff"] == 0.0
