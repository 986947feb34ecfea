"""quantize and bench read their split as a stream of decoded batches (issue 26): the same numbers as over the
whole decoded array (bit for bit), the same skips and errors, and memory that does not hold the split.

The "whole array" side is the path both verbs took before: `load_split` decodes the split into one array,
and every model, the Keras reference and the OOD statistics run over it.
"""
from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
from typer.testing import CliRunner

from cxredge.cli.main import app
from cxredge.edge.bench import run as bench_run
from cxredge.edge.bench.measure import BenchSettings, run_bench
from cxredge.edge.data import sources
from cxredge.edge.data import stream as stream_mod
from cxredge.edge.data.dataset import index_split, load_split, scan
from cxredge.edge.ood import flags as ood_flags
from cxredge.edge.ood import guard
from cxredge.edge.runtime.interpreter import find_runtime
from cxredge.errors import CxrError
from cxredge.formats import unclocked
from conftest import make_dataset
from edge_fixtures import make_run

runner = CliRunner()
# 40 val and 80 test images: neither a multiple of the stream's 32-image batches nor of predict's 16, and the
# test split spans two of the OOD statistics' 64-image chunks
COUNTS = {"train": 2, "val": 10, "test": 20}
# what a bench.json may differ in between two runs of the same code: timings, memory, load, the machine's state



@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("stream_data"), counts=COUNTS)


@pytest.fixture(scope="module")
def guarded_run(edge_models, data, tmp_path_factory):
    """A run on `data` whose fc sidecars carry the OOD reference of its val split (two_conv's carry none)."""
    run = make_run(tmp_path_factory.mktemp("stream_run"), edge_models, data)
    ref = guard.build_reference(load_split(scan(data), "val").x).to_dict()
    for precision in ("float32", "int8"):
        side = run / "fc" / f"{precision}.json"
        side.write_text(json.dumps({**json.loads(side.read_text()), "ood": ref}))
    return run


def whole_array(ds, split, entries, settings, runtime, skip_bad=False, limit=None, bar=None):
    """bench's data part as it was: the split decoded into one array, every model and the OOD block over it."""
    loaded = load_split(ds, split, skip_bad=skip_bad, limit=limit)
    return loaded, run_bench(entries, loaded.x, loaded.y, list(ds.classes), settings, runtime), loaded.x


# --- the check pass -------------------------------------------------------------------------------

def test_index_split_keeps_load_splits_items_skips_and_errors(tmp_path):
    root = make_dataset(tmp_path / "d", counts={"train": 2, "val": 2, "test": 5})
    bad = sorted((root / "test" / "beta").glob("*.png"))
    bad[1].write_bytes(b"\x89PNG\r\n\x1a\n not really")
    bad[3].write_bytes(bad[3].read_bytes()[:200])  # truncated
    ds = scan(root)
    for limit in (None, 7):
        seen = []
        index = index_split(ds, "test", skip_bad=True, limit=limit, on_image=lambda s, p, y, img: seen.append(img))
        loaded = load_split(ds, "test", skip_bad=True, limit=limit)
        assert index.paths == loaded.paths and np.array_equal(index.y, loaded.y)
        assert index.skipped == loaded.skipped and index.pixel_hashes == loaded.pixel_hashes
        assert np.array_equal(np.stack(seen), loaded.x)  # the same pixels, in file order
        assert np.array_equal(np.concatenate(list(index.stream(3))), loaded.x)
    assert index_split(ds, "test", skip_bad=True).skipped == [str(bad[1]), str(bad[3])]
    with pytest.raises(CxrError) as new:
        index_split(ds, "test")
    with pytest.raises(CxrError) as old:
        load_split(ds, "test")
    assert str(new.value) == str(old.value) and bad[1].name in str(new.value) and "--skip-bad" in str(new.value)
    assert "\n" not in str(new.value)


def test_ood_statistics_of_a_stream_equal_those_of_the_array(data):
    x = load_split(scan(data), "test").x  # 80 images: two chunks
    stats = guard.Statistics()
    for img in x:
        stats.add(img)
    a, b = stats.arrays(), guard.raw_statistics(x)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1], equal_nan=True)
    assert guard.build_reference(stats, "test").to_dict() == guard.build_reference(x, "test").to_dict()


# --- bench ------------------------------------------------------------------------------------------

def test_bench_streamed_equals_the_whole_array(guarded_run, data):
    source = sources.from_run(guarded_run)
    ds, _ = sources.eval_dataset(source, None, "test")
    settings, runtime = BenchSettings(runs=2, warmup=0), find_runtime()
    _, old, old_x = whole_array(ds, "test", source.entries, settings, runtime)
    index, new, stats = bench_run.evaluate_split(ds, "test", source.entries, settings, runtime)
    assert len(index.y) == 80 and set(new.probabilities) == set(old.probabilities) and len(old.probabilities) == 4
    for key, probs in old.probabilities.items():
        assert np.array_equal(new.probabilities[key], probs), key  # bit for bit
        assert np.array_equal(new.predictions[key], old.predictions[key])
    assert unclocked(new.models) == unclocked(old.models)
    old_block = ood_flags.bench_block(source.entries, old_x, index.paths, ds.root)
    assert ood_flags.bench_block(source.entries, stats, index.paths, ds.root) == old_block
    assert old_block["guarded"] == ["fc/float32", "fc/int8"]


def test_bench_json_is_the_same_apart_from_timings(guarded_run, tmp_path, monkeypatch):
    args = ["bench", "--run", str(guarded_run), "--runs", "2", "--warmup", "0", "--ci", "200"]
    res = runner.invoke(app, args + ["--out", str(tmp_path / "new")])
    assert res.exit_code == 0, res.output
    monkeypatch.setattr(bench_run, "evaluate_split", whole_array)
    res = runner.invoke(app, args + ["--out", str(tmp_path / "old")])
    assert res.exit_code == 0, res.output
    new, old = (json.loads((tmp_path / side / "bench.json").read_text()) for side in ("new", "old"))
    assert new["dataset"]["n"] == 80 and new["ood"]["guarded"] and new["clinical"]
    assert unclocked(new) == unclocked(old)


# --- quantize -------------------------------------------------------------------------------------

def test_keras_reference_and_validation_streamed_equal_the_whole_array(data, edge_models):
    from cxredge.convert import validate
    from cxredge.keras import keras
    from cxredge.train.variants import build_model

    keras.utils.set_random_seed(0)
    model = build_model("fc", 4, alpha=0.25, weights=None)
    ds = scan(data)
    loaded, index = load_split(ds, "val"), index_split(ds, "val")
    old = model.predict(loaded.x.astype(np.float32), batch_size=16, verbose=0)  # the reference as it was made
    for images in (loaded.x, index.stream(), index.stream(48)):
        new = validate.keras_reference(model, images, index.y, ds.classes, "val")
        assert new.probs.dtype == np.float32 and np.array_equal(new.probs, old)  # bit for bit
    for name in ("float32", "int8"):
        assert np.array_equal(validate.run_tflite(edge_models[name], index.stream()),
                              validate.run_tflite(edge_models[name], loaded.x))
    with pytest.raises(ValueError, match="multiple of 16"):
        validate.keras_reference(model, index.stream(24), index.y, ds.classes, "val")


def test_quantize_streamed_writes_what_the_whole_array_wrote(data, tmp_path, monkeypatch):
    """quantize end to end, twice on copies of one run: streamed, then with the val split decoded into one
    array (Split.stream() giving that array): the same validation records and OOD reference in every sidecar."""
    from test_quantize import make_run as make_quantize_run

    from cxredge.convert import pipeline
    from cxredge.edge.data.stream import ArrayImages

    def whole_val(ds, split, tracker):
        loaded = load_split(ds, split, skip_bad=True)
        val = index_split(ds, split, skip_bad=True, hash_pixels=False)
        monkeypatch.setattr(val, "stream", lambda batch_size=32: ArrayImages(loaded.x))
        return val, guard.build_reference(loaded.x, split).to_dict()

    args = ["--mode", "int8", "--calibration-size", "8"]
    new_run = make_quantize_run(tmp_path / "new", data)
    res = runner.invoke(app, ["quantize", "--run", str(new_run), *args])
    assert res.exit_code == 0, res.output
    old_run = make_quantize_run(tmp_path / "old", data)
    monkeypatch.setattr(pipeline, "index_val", whole_val)
    res = runner.invoke(app, ["quantize", "--run", str(old_run), *args])
    assert res.exit_code == 0, res.output
    for precision in ("float32", "int8"):
        new, old = (json.loads((run / "fc" / f"{precision}.json").read_text()) for run in (new_run, old_run))
        assert new["validation"]["n"] == 40 and new["ood"]["n"] == 40
        assert new["validation"] == old["validation"] and new["ood"] == old["ood"], precision
    rows = [[{k: v for k, v in r.items() if k != "model"} for r in json.loads((run / "quantize.json").read_text())
             ["results"]] for run in (new_run, old_run)]
    assert rows[0] == rows[1]


# --- memory ---------------------------------------------------------------------------------------

def test_bench_and_validation_hold_a_few_batches_not_the_split(edge_models, tmp_path, monkeypatch):
    """tracemalloc's peak (numpy's pixel arrays are traced) over bench's data part and quantize's check pass +
    one validation: far under the split's pixels. One decode thread (2 batches of 32 ahead: 14 MB) and 4-image
    OOD chunks (4 MB; 64 by default: 70 MB of temporaries) keep the bound independent of the machine's cores;
    the whole-array path, measured the same way, is over the pixels' size."""
    from cxredge.convert import validate
    from cxredge.convert.pipeline import index_val

    n = 480  # x 147 KB = 72 MB of decoded pixels; the bound is a third of it
    root = make_dataset(tmp_path / "d", counts={"train": 1, "val": n // 4, "test": n // 4})
    run = make_run(tmp_path / "run", edge_models, root, variants=("fc",))
    monkeypatch.setattr(stream_mod, "workers", lambda: 1)
    monkeypatch.setattr(guard, "CHUNK", 4)
    source = sources.from_run(run)
    ds, _ = sources.eval_dataset(source, None, "test")
    settings, runtime = BenchSettings(runs=1, warmup=0), find_runtime()
    pixels = n * 224 * 224 * 3
    bound = pixels // 3

    def peak(fn) -> int:
        tracemalloc.start()
        try:
            fn()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    def quantize_side():
        val, _ = index_val(ds, "val", NullTracker())
        probs = validate.run_tflite(run / "fc" / "float32.tflite", val.stream())
        ref = validate.Reference("val", val.stream(), val.y, probs, tuple(ds.classes))
        assert validate.validate(run / "fc" / "float32.tflite", "float32", ref)["n"] == n

    bench_peak = peak(lambda: bench_run.evaluate_split(ds, "test", source.entries, settings, runtime))
    quantize_peak = peak(quantize_side)
    old_peak = peak(lambda: whole_array(ds, "test", source.entries, settings, runtime))
    assert old_peak > pixels  # the check can fail: the old path holds every pixel (twice while it stacks)
    assert bench_peak < bound, (bench_peak, bound)
    assert quantize_peak < bound, (quantize_peak, bound)


class NullTracker:
    def task(self, description: str, total: int):
        return lambda n=1: None
