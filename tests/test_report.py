"""cxredge report: self-contained HTML + Markdown twin, merged benches, no matplotlib."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxredge.cli.main import app
from edge_fixtures import make_run

runner = CliRunner()


@pytest.fixture(scope="module")
def reported_run(edge_models, tiny_data, tmp_path_factory):
    """A run with its own bench.json, plus a second bench.json 'from a Pi' (same models, other device name)."""
    run = make_run(tmp_path_factory.mktemp("report_run"), edge_models, tiny_data)
    res = runner.invoke(app, ["bench", "--run", str(run), "--runs", "3", "--warmup", "1"])
    assert res.exit_code == 0, res.output
    pi = run.parent / "pi_bench"
    res = runner.invoke(app, ["bench", "--run", str(run), "--runs", "3", "--warmup", "1", "--threads", "2",
                              "--out", str(pi)])
    assert res.exit_code == 0, res.output
    doc = json.loads((pi / "bench.json").read_text())
    doc["device"].update(hostname="raspberrypi", cpu_model="Raspberry Pi 5 Model B Rev 1.0", machine="aarch64")
    (pi / "bench.json").write_text(json.dumps(doc))
    return run, pi / "bench.json"


def test_report_html_and_markdown(reported_run, tmp_path):
    run, pi = reported_run
    res = runner.invoke(app, ["report", "--run", str(run), "--bench", str(pi), "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "report.html").read_text()
    md = (tmp_path / "report.md").read_text()
    srcs = re.findall(r"src='([^']*)'", page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)  # self-contained
    assert len(srcs) >= 4 + 2 + 1  # curves + confusion per variant, bench plots, side-by-side plot
    for text in (page, md):
        assert "0.878" in text and "0.865" in text  # the study's numbers next to ours
        assert "fc/int8" in text and "two_conv/float32" in text
        assert "Side by side" in text and "raspberrypi" in text
        assert "Float vs quantized" in text
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (tmp_path / link).is_file(), link
    # the variant table carries the metrics.json numbers
    assert "| fc | 0.812 | 0.865 | 0.800 |" in md


def test_report_without_matplotlib(reported_run, tmp_path, monkeypatch):
    run, _ = reported_run
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    res = runner.invoke(app, ["report", "--run", str(run), "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "matplotlib" in res.output  # says which figures were left out
    page = (tmp_path / "report.html").read_text()
    assert "data:image/png" in page  # the bench plots already on disk are still embedded
    assert "Variants" in page and "On-device benchmark" in page


def test_report_bench_only_and_bad_inputs(reported_run, tmp_path):
    run, pi = reported_run
    res = runner.invoke(app, ["report", "--bench", str(pi), "--bench", str(run / "bench" / "test" / "bench.json"),
                              "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "Side by side" in (tmp_path / "report.md").read_text()
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "a bench"}')
    res = runner.invoke(app, ["report", "--bench", str(bad), "--out", str(tmp_path)])
    assert res.exit_code == 1 and "bad.json" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["report", "--run", str(tmp_path / "nope")])
    assert res.exit_code == 1 and "not found" in res.output
    assert Path(tmp_path / "report.html").is_file()  # the earlier report is untouched


def test_variant_table_shows_the_clinical_block_of_metrics_json(reported_run, tmp_path):
    import shutil

    import numpy as np

    from cxredge.edge.evaluate import validation
    from cxredge.edge.evaluate.clinical import Resampler

    run = shutil.copytree(reported_run[0], tmp_path / "run")  # the shared run stays as it was
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 4)
    prob = rng.dirichlet(np.ones(4), size=16)
    prob[np.arange(16), y] += 1.0
    prob /= prob.sum(axis=1, keepdims=True)
    path = run / "fc" / "metrics.json"
    m = json.loads(path.read_text())
    validation.merge_into(m, validation.clinical_block(y, prob, m["classes"], Resampler(16, 200)))
    path.write_text(json.dumps(m))
    res = runner.invoke(app, ["report", "--run", str(run), "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    row = next(ln for ln in (tmp_path / "rep" / "report.md").read_text().splitlines()
               if ln.startswith("| fc | 0.812 |"))
    lo, hi = m["ci95"]["accuracy"]
    assert f"| {lo:.3f}-{hi:.3f} | {m['macro_auc']:.3f} | {m['ece']:.3f} |" in row
