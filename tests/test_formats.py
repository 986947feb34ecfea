"""Contracts in one place (cxredge/formats.py): one bench row schema, one speed-up rule, file names and format
versions spelled once."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from cxredge import formats
from cxredge.edge.bench import measure as bench
from cxredge.edge.evaluate.metrics import classification_metrics
from cxredge.edge.runtime import benchmark_model

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "cxredge"
FILE_NAMES = {formats.RUN_JSON, formats.METRICS_JSON, formats.BENCH_JSON, formats.BENCH_MD, formats.AUDIT_JSON,
              formats.AUDIT_MD, formats.AUDIT_HTML, formats.LABELS_TXT, formats.QUANTIZE_JSON, formats.EXPLAIN_JSON,
              formats.BUNDLE_JSON}
VERSIONS = {v for k, v in vars(formats).items() if k.endswith("_FORMAT")}


def _row(variant="two_conv", precision="float32", median=10.0, mean=None, status="ok", threads=1, delegate="xnnpack"):
    lat = None if status != "ok" else {"median": median, "mean": mean if mean is not None else median}
    return formats.bench_row(model=f"{variant}/{precision}", variant=variant, precision=precision,
                             delegate=delegate, threads=threads, status=status, latency_ms=lat)


def test_bench_row_has_every_key_and_refuses_unknown_ones():
    row = formats.bench_row(model="fc/int8")
    assert list(row)[:len(formats.BENCH_ROW_KEYS)] == list(formats.BENCH_ROW_KEYS)
    assert row["status"] == "ok" and row["speedup_vs_float32"] is None
    with pytest.raises(KeyError, match="speedup"):
        formats.bench_row(speedup=2.0)


def test_one_speed_up_rule():
    rows = [_row(median=30.0), _row(precision="int8", median=10.0), _row(precision="int8", threads=4, median=5.0),
            _row(variant="fc", precision="float32", status="failed"), _row(variant="fc", precision="int8")]
    formats.fill_speedups(rows)
    assert rows[0]["speedup_vs_float32"] == pytest.approx(1.0)
    assert rows[1]["speedup_vs_float32"] == pytest.approx(3.0)
    assert rows[2]["speedup_vs_float32"] is None  # no float32 row at 4 threads
    assert rows[4]["speedup_vs_float32"] is None  # its float32 row failed
    # benchmark_model rows without a median: mean against mean
    mean_rows = [_row(median=None, mean=8.0), _row(precision="int8_refit", median=None, mean=2.0)]
    formats.fill_speedups(mean_rows)
    assert mean_rows[1]["speedup_vs_float32"] == pytest.approx(4.0)
    assert [formats.headline_ms(r) for r in (rows[0], rows[3], mean_rows[1], None)] == [30.0, None, 2.0, None]


def test_both_bench_writers_make_the_same_row(tmp_path):
    model = tmp_path / "fc" / "int8.tflite"
    model.parent.mkdir()
    model.write_bytes(b"x" * 10)
    entry = bench.ModelEntry(model, "fc/int8", "fc", "int8", ["a", "b"])
    ours = bench.base_row(entry, "xnnpack", 2)
    run = benchmark_model.new_run()
    run.update(graph=str(model), threads=2, size_mb=1e-5, timings=[1000.0, 2000.0, 1500.0, 1400.0])
    theirs = benchmark_model.to_row(run)
    assert set(formats.BENCH_ROW_KEYS) <= set(ours) and set(formats.BENCH_ROW_KEYS) <= set(theirs)
    assert (ours["model"], ours["variant"], ours["precision"]) == (theirs["model"], theirs["variant"],
                                                                   theirs["precision"]) == ("fc/int8", "fc", "int8")


def test_metrics_json_keys():
    m = classification_metrics(np.array([0, 1, 1]), np.array([0, 1, 0]), ["a", "b"])
    assert set(formats.METRICS_KEYS) <= set(m)


def _constants(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_file_names_and_format_versions_are_spelled_only_in_formats():
    found = [f"{p.relative_to(ROOT)}:{line}: {value!r}" for p in sorted(PACKAGE.rglob("*.py"))
             if p.name not in ("formats.py",) for line, value in _constants(p)
             if value in FILE_NAMES or value in VERSIONS]
    assert found == [], "use the names of cxredge/formats.py:\n" + "\n".join(found)


def test_no_docstring_points_at_a_missing_file():
    bad = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if "DESIGN.md" in p.read_text(encoding="utf-8")]
    assert bad == []
    assert formats.bench_dir("runs/x", "chest").as_posix() == "runs/x/bench/chest"
