"""The report's first screen (issue 24 item 3): a verdict by a stated rule, its numbers, every warning,
then a table of contents whose links all land. TF-free and model-free (tests/report_fixtures.py)."""
from __future__ import annotations

import json
import re
from pathlib import Path

from report_fixtures import synthetic_bench
from typer.testing import CliRunner

from cxredge.cli.main import app
from cxredge.edge.report.summary import RULE, build_card, recommend
from cxredge.paths import SAMPLE_DATA

runner = CliRunner()


def name(b):
    return b["device"]["hostname"]


def test_the_rule_picks_the_smallest_int8_within_the_best_ci():
    b = synthetic_bench()
    key, why, warnings = recommend(b)
    assert key == "two_conv/int8" and not warnings  # fc/int8's CI misses the best's; two_conv/int8 overlaps
    b["models"]["fc/int8"].update(accuracy=0.97, ci95={"accuracy": [0.93, 0.99]}, agreement_with_float=0.99)
    for r in b["results"]:
        if r["model"] == "fc/int8":
            r["size_bytes"] = 500_000  # ...and smaller
    assert recommend(b)[0] == "fc/int8"
    b["models"]["fc/int8"]["agreement_with_float"] = 0.95  # but it disagrees with its float model
    assert recommend(b)[0] == "two_conv/int8"
    for k in ("fc/int8", "two_conv/int8"):
        b["models"][k]["agreement_with_float"] = 0.90
    key, why, warnings = recommend(b)
    assert key == "two_conv/float32" and "not an int8 model" in warnings[0]


def test_the_card_carries_every_warning():
    b = synthetic_bench(n=40, data_path=str(SAMPLE_DATA / "test"),
                        latency={"fc/float32": (10.0, 30.0)})  # a noisy row
    b["ood"] = {"n": 40, "n_flagged": 6, "share": 0.15}
    audit = {"warnings": [{"kind": "shortcut", "message": "border brightness predicts COVID"}],
             "duplicates": {"cross_split": [["a.png", "b.png"]]}}
    card = build_card([(Path("b.json"), b)], audit, {}, ["x.json: skipped: bad"], name)
    text = "\n".join(card.warnings)
    for expected in ("bundled sample", "test set too small", "OOD guard: 6 of 40", "noisy latency on laptop",
                     "fc/float32 x1", "audit (shortcut): border brightness", "leakage: 1 group", "x.json: skipped"):
        assert expected in text, expected
    facts = dict(card.facts)
    assert facts["model"] == card.model and "MB" in facts["size"] and "(" in facts["accuracy (95% CI)"]
    assert "latency on laptop" in facts and len(card.class_rows) == 4


def test_report_opens_with_the_card_then_contents(tmp_path):
    a = synthetic_bench(n=400, host="laptop")
    pi = synthetic_bench(n=400, host="pi5", latency={"two_conv/int8": (40.0, 100.0)})
    ext = synthetic_bench(n=120, seed=3, data_path="/data/hospital_b", internal=False)
    ext["dataset"]["name"] = "hospital_b"
    files = []
    for i, doc in enumerate((a, pi, ext)):
        files += ["--bench", str(tmp_path / f"{i}.json")]
        (tmp_path / f"{i}.json").write_text(json.dumps(doc))
    res = runner.invoke(app, ["report", *files, "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "report.html").read_text()
    card = page.index("class='card'")
    assert card < page.index("<nav>") < page.index("<h2 id=")  # the verdict, then contents, then details
    assert "Summary: deploy two_conv/int8" in page and RULE.split(" = ")[0] in page
    assert "NOISY: p90/median 2.50" in page  # the pi's latency of the recommended model is marked
    assert re.search(r"accuracy on hospital_b</th><td>0\.\d{3} \(", page)
    for target in re.findall(r"<a href='#([^']+)'>", page):
        assert f"id='{target}'" in page, target
    md = (tmp_path / "report.md").read_text()
    assert md.index("## Summary: deploy two_conv/int8") < md.index("Contents: ")
