"""report's inputs (issue 22 causes 4 and 12): only PNGs inside the run are embedded; bench.json,
explain.json and audit.json are checked before use; a bad bench found in the run is skipped with a warning.
TF-free and model-free (tests/report_fixtures.py)."""
from __future__ import annotations

import base64
import copy
import json
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from report_fixtures import synthetic_bench
from typer.testing import CliRunner

from cxredge.cli.main import app
from cxredge.edge.report.page import build
from cxredge.errors import CxrError
from fuzz import FUZZ

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"
SECRET = PNG + b"TOP-SECRET-NOT-IN-THE-RUN" * 4


def explain_doc(grid: str) -> dict:
    group = {"n": 2, "fc/int8": {"accuracy": 1.0, "border_share_mean": 0.2}}
    return {"models": [{"key": "fc/int8", "path": "fc/int8.tflite", "method": "occlusion"}],
            "summary": {"per_class": {"COVID": group}, "all": group, "grouped_by": "true class"},
            "regions": {"definition": "outer 10% strip", "border_area_share": 0.36},
            "settings": {"patch": 32, "fill": 0.5, "stride": 16, "target": "predicted"},
            "images": ["a.png", "b.png"], "grid": grid}


def make_run(tmp_path: Path, grid: str) -> Path:
    run = tmp_path / "run"
    (run / "explain").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"classes": ["COVID"]}))
    (run / "explain" / "explain.json").write_text(json.dumps(explain_doc(grid)))
    return run


def report_page(run: Path, out: Path) -> tuple[str, str]:
    res = runner.invoke(app, ["report", "--run", str(run), "--out", str(out)])
    assert res.exit_code == 0, res.output
    return (out / "report.html").read_text(), res.output


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_report_embeds_no_file_from_outside_the_run(tmp_path, how):
    """cause 4: explain.json's `grid` may not put another file (here a PNG-looking secret) into report.html."""
    secret = tmp_path / "secret.png"
    secret.write_bytes(SECRET)
    grid = {"absolute": str(secret), "dotdot": "../../secret.png", "symlink": "grid.png"}[how]
    run = make_run(tmp_path, grid)
    if how == "symlink":
        (run / "explain" / "grid.png").symlink_to(secret)
    page, output = report_page(run, tmp_path / "out")
    assert base64.b64encode(SECRET).decode()[:40] not in page
    assert "not embedded" in page and "Where the model looks" in page


def test_report_embeds_a_png_inside_the_run(tmp_path):
    run = make_run(tmp_path, "grid.png")
    (run / "explain" / "grid.png").write_bytes(PNG + b"inside" * 8)
    page, _ = report_page(run, tmp_path / "out")
    assert base64.b64encode(PNG + b"inside" * 8).decode()[:40] in page


def test_report_refuses_a_non_png_inside_the_run(tmp_path):
    run = make_run(tmp_path, "../run.json")
    page, _ = report_page(run, tmp_path / "out")
    assert base64.b64encode((run / "run.json").read_bytes()).decode()[:20] not in page


@pytest.mark.parametrize("mutate, key", [
    (lambda d: d.pop("results"), "results: missing"),
    (lambda d: d["results"][1].update(latency_ms={"median": "fast"}), "results[1].latency_ms.median"),
    (lambda d: d["results"][0].update(model=7), "results[0].model"),
    (lambda d: d["models"]["fc/int8"].update(ci95={"accuracy": [0.1]}), "models.fc/int8.ci95.accuracy"),
    (lambda d: d.update(dataset=[]), "dataset"),
    (lambda d: d["models"]["fc/int8"]["per_class"]["COVID"].update(sensitivity="high"),
     "models.fc/int8.per_class.COVID.sensitivity"),
])
def test_bench_json_shape_is_checked(mutate, key):
    """cause 12: a bench.json of the wrong shape is one error naming the file and the key."""
    from cxredge.edge.report.inputs import check_bench

    doc = json.loads(json.dumps(synthetic_bench()))
    mutate(doc)
    with pytest.raises(CxrError, match=r"^b\.json: not a usable bench\.json \(" + key.replace(".", r"\.")
                       .replace("[", r"\[").replace("]", r"\]")):
        check_bench("b.json", doc)


def test_explain_and_audit_shapes_are_checked():
    from cxredge.edge.report.inputs import check_audit, check_explain

    check_explain("e.json", explain_doc("grid.png"))
    with pytest.raises(CxrError, match=r"e\.json: .*settings\.patch: missing"):
        bad = explain_doc("g.png")
        del bad["settings"]["patch"]
        check_explain("e.json", bad)
    with pytest.raises(CxrError, match=r"a\.json: .*warnings\[0\]\.message"):
        check_audit("a.json", {"warnings": [{"kind": "shortcut", "message": 3}]})


def test_a_bad_device_bench_is_skipped_with_a_warning(tmp_path):
    """cause 12: a bad devices/*/bench.json found in the run no longer breaks every later report."""
    run = tmp_path / "run"
    (run / "bench" / "test").mkdir(parents=True)
    (run / "run.json").write_text("{}")
    (run / "bench" / "test" / "bench.json").write_text(json.dumps(synthetic_bench()))
    (run / "devices" / "pi").mkdir(parents=True)
    (run / "devices" / "pi" / "bench.json").write_text(json.dumps({"device": {}, "results": [{"model": 1}]}))
    (run / "audit.json").write_text(json.dumps({"warnings": "none"}))
    page, output = report_page(run, run)
    assert "devices/pi/bench.json: skipped" in page and "results[0].model" in page
    assert "data audit left out" in page
    res = runner.invoke(app, ["report", "--bench", str(run / "devices" / "pi" / "bench.json"), "--out",
                              str(tmp_path)])
    assert res.exit_code == 1 and "results[0].model: expected a string, got integer" in res.output
    assert "Traceback" not in res.output


SCALAR = st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False) | st.text(max_size=8)
JSON = st.recursive(SCALAR,
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=8)
BASE = synthetic_bench(resamples=50)


def replaced(base: dict, where: tuple, value, drop: bool) -> dict:
    """A copy of `base` with the key at path `where` removed (`drop`, in a dict) or set to `value`."""
    doc = copy.deepcopy(base)
    parent = doc
    for k in where[:-1]:
        parent = parent[k]
    if drop and isinstance(parent, dict):
        parent.pop(where[-1])
    else:
        parent[where[-1]] = value
    return doc


def paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:3]):
            yield from paths(v, prefix + (i,))


PATHS = [p for p in paths(BASE) if p]


@FUZZ
@given(where=st.sampled_from(PATHS), value=JSON, drop=st.booleans())
def test_fuzz_bench_json_either_refused_or_reported(where, value, drop, tmp_path_factory, monkeypatch):
    """cause 12, property: any one key of a real bench.json replaced or removed -> the check refuses it
    with CxrError, or the whole report builds (never another exception). Tables only (no matplotlib),
    to keep the example budget fast."""
    from cxredge.edge.report.inputs import check_bench

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    doc = replaced(BASE, where, value, drop)
    try:
        check_bench("b.json", doc)
    except CxrError as exc:
        assert str(exc).startswith("b.json: not a usable bench.json (")
        return
    build(None, [(Path("b.json"), doc)], tmp_path_factory.mktemp("assets"))


EXPLAIN_BASE = explain_doc("grid.png")
EXPLAIN_PATHS = [p for p in paths(EXPLAIN_BASE) if p]


@FUZZ
@given(where=st.sampled_from(EXPLAIN_PATHS), value=JSON, drop=st.booleans())
def test_fuzz_explain_json_either_refused_or_reported(where, value, drop, tmp_path_factory):
    """cause 12, property: explain.json with one key replaced or removed -> the report leaves the section out
    with a warning, or renders it; never another exception."""
    run = tmp_path_factory.mktemp("ex") / "run"
    doc = replaced(EXPLAIN_BASE, where, value, drop)
    (run / "explain").mkdir(parents=True)
    (run / "explain" / "explain.json").write_text(json.dumps(doc))
    page = build(run, [], run / "assets")
    text = " ".join(str(b) for b in page.blocks) + " ".join(page.warnings)
    assert "Where the model looks" in text or "saliency section left out" in text


def test_plots_of_a_run_given_by_a_relative_path_are_embedded(tmp_path, monkeypatch):
    """`cxredge report --run runs/default` (the quick start) embeds the run's own PNGs: the embed check
    resolves the path as given, it does not join it to the (relative) root a second time."""
    from PIL import Image

    from cxredge.edge.render.document import Doc

    (tmp_path / "runs" / "default" / "fc").mkdir(parents=True)
    Image.new("L", (8, 8)).save(tmp_path / "runs" / "default" / "fc" / "curves.png")
    monkeypatch.chdir(tmp_path)
    d = Path("runs/default/fc")
    doc = Doc()
    doc.img(d / "curves.png", "curves", root=d)
    assert [b[0] for b in doc.blocks] == ["img"] and not doc.warnings
    doc.img(d / ".." / ".." / ".." / "runs" / "default" / "fc" / "curves.png", "same file", root=d)
    assert len(doc.blocks) == 2  # the same file by another spelling is still inside the run
    outside = tmp_path / "outside.png"
    Image.new("L", (8, 8)).save(outside)
    doc.img(d / ".." / ".." / ".." / "outside.png", "escape", root=d)
    assert len(doc.blocks) == 2 and doc.warnings  # outside the run: refused with a warning

