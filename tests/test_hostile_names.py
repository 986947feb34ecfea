"""Issue 22 causes 8 and 14: names from outside (class folders, file names, error messages) in audit.md,
report.md and bench.md. A file name that is not UTF-8 no longer crashes audit half-way (its bytes show as
\\xNN everywhere, audit.json/md/html are written together), and Markdown twins escape what a viewer would
run or read as markup. The rendered Markdown is checked with a real CommonMark parser (markdown-it-py,
which rich already depends on). Each test failed on the main before the fix."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from typer.testing import CliRunner

from cxredge import markdown as md
from cxredge.cli.main import app
from conftest import make_dataset

runner = CliRunner()
HOSTILE_CLASS = "[link=https:x]<img src=x onerror=alert(1)>"  # rich markup, then HTML
HOSTILE_FILE = "a|b`<svg onload=alert(2)>`_x_ # *y*.png"
TAGS = ("<img src=x", "<svg", "<script")  # as real tags: escaped they start with &lt;


def render(markdown: str) -> str:
    """As GitHub would show it: CommonMark with raw HTML allowed, plus GFM tables."""
    return MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)


def cells(markdown: str) -> list[str]:
    """The rendered text of every table cell (header and body), in order."""
    return re.findall(r"<t[hd](?: [^>]*)?>(.*?)</t[hd]>", render(markdown), flags=re.S)


def escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def assert_safe(markdown: str, *visible: str) -> None:
    html = render(markdown)
    for tag in TAGS:
        assert tag not in html, f"{tag} reached the HTML: {html[:2000]}"
    for text in visible:  # and the name is still shown, as text
        assert escaped(text) in html, text


# --- the helper ---------------------------------------------------------------------------------

@pytest.mark.parametrize("s", ["<script>alert(1)</script>", HOSTILE_CLASS, "a|b", "x`y``z",
                               "**b** _c_ [l](javascript:x)", "# h", "- item", "1. one", "line1\nline2", "&amp;",
                               "back\\slash|pipe", "~~s~~"])
def test_text_renders_as_itself(s):
    html = render(md.text(s))
    flat = s.replace("\n", " ")
    assert html.strip() == "<p>" + escaped(flat) + "</p>", html


@pytest.mark.parametrize("s", ["<script>", "a`b", "``x``", "`lead", "trail`", " both ", "p|q"])
def test_code_is_one_span_holding_exactly_the_text(s):
    html = render(md.code(s)).strip()
    assert html == "<p><code>" + escaped(s) + "</code></p>"


def test_table_cells_never_split():
    rows = [["a|b", "c\\|d", "`e|f`"], ["x\ny", "\\", "|"]]
    text = md.table(["h1", "h2", "h3"], rows)
    assert cells(text) == ["h1", "h2", "h3"] + [escaped(c.replace("\n", " ")) for r in rows for c in r]


def test_non_utf8_names_are_shown_as_escapes():
    name = os.fsdecode(b"scan\xff\xfe.png")
    assert md.text(name) == "scan\\\\xff\\\\xfe.png"  # a backslash is escaped; renders as scan\xff\xfe.png
    assert "scan\\xff\\xfe.png" in render(md.text(name))


# --- cause 8 and 14 in audit --------------------------------------------------------------------

@pytest.fixture()
def hostile_data(tmp_path) -> Path:
    """The tiny dataset with a class folder named like HTML, a hostile file name, a file name that is not
    UTF-8, and a duplicate of it across splits (so it appears in warnings, tables and the thumbnails)."""
    root = make_dataset(tmp_path / "data")
    for split in ("train", "val", "test"):
        os.rename(root / split / "delta", root / split / HOSTILE_CLASS)
    src = next((root / "train" / "alpha").glob("*.png"))
    shutil.copy(src, root / "train" / "beta" / HOSTILE_FILE)
    raw = os.path.join(os.fsencode(root / "test" / "gamma"), b"scan\xff\xfe.png")
    shutil.copy(src, os.fsdecode(raw))
    return root


def test_audit_with_hostile_and_non_utf8_names(hostile_data, tmp_path):
    out = tmp_path / "out"
    res = runner.invoke(app, ["audit", str(hostile_data), "--out", str(out), "--folds", "2"])
    assert res.exit_code == 0, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "warning (shortcut): [link=https:x]<img" in res.output  # shown as text, not taken as rich markup
    a = json.loads((out / "audit.json").read_text(encoding="utf-8"))
    names = json.dumps(a)
    assert "scan\\\\xff\\\\xfe.png" in names  # the bytes as \xNN (JSON doubles the backslash)
    assert "\\udcff" not in names  # no lone surrogate left for a JSON reader to choke on
    assert HOSTILE_CLASS in a["classes"]
    text = (out / "audit.md").read_text(encoding="utf-8")
    assert_safe(text, HOSTILE_CLASS)
    page = (out / "audit.html").read_text(encoding="utf-8")
    assert HOSTILE_CLASS not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    # the non-UTF-8 file's thumbnail is found on disk (duplicate pictures and per-class thumbnails)
    assert re.search(r"<img src='data:image/png;base64,[A-Za-z0-9+/=]{100,}' width='112' "
                     r"alt='test/gamma/scan\\xff\\xfe.png'>", page)


def test_audit_outputs_are_written_together(hostile_data, tmp_path, monkeypatch):
    """A failure while rendering or writing leaves the previous audit.json/md/html, all three."""
    out = tmp_path / "out"
    assert runner.invoke(app, ["audit", str(hostile_data), "--out", str(out), "--folds", "2"]).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(*a, **k):
        raise OSError(28, "No space left on device", str(out / "audit.html"))

    monkeypatch.setattr("cxredge.edge.audit.writers.to_html", broken)
    res = runner.invoke(app, ["audit", str(hostile_data), "--out", str(out), "--folds", "2", "--seed", "1"])
    assert res.exit_code == 1 and "No space left on device" in res.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


# --- cause 14 in report.md and bench.md -----------------------------------------------------------

def test_report_markdown_escapes_every_block(tmp_path):
    from cxredge.edge.report.page import Doc, to_markdown

    doc = Doc()
    doc.h(2, HOSTILE_CLASS)
    doc.p(f"Data `{HOSTILE_FILE}` and {HOSTILE_CLASS} | pipes")
    doc.table(["class", "n"], [[HOSTILE_CLASS, "1"], [HOSTILE_FILE, "2"]])
    (tmp_path / "p (1).png").write_bytes(b"png")
    doc.img(tmp_path / "p (1).png", f"plot of {HOSTILE_CLASS}")
    text = to_markdown(doc, tmp_path)
    assert_safe(text, HOSTILE_CLASS)
    assert "](p%20%281%29.png)" in text


def test_bench_markdown_escapes_names_and_errors():
    from cxredge.edge.bench.results import bench_markdown

    row = {"model": f"{HOSTILE_CLASS}/int8", "delegate": "xnnpack", "threads": 1, "size_bytes": 1000,
           "status": "failed", "error": "bad | <script>alert(3)</script>\nsecond line"}
    doc = {"device": {"cpu_model": "<svg onload=x>"}, "settings": {"threads": [1]}, "results": [row],
           "dataset": {"source": HOSTILE_FILE, "split": "test`x", "n": 1, "classes": [HOSTILE_CLASS, "b|c"]},
           "models": {row["model"]: {"per_class": {HOSTILE_CLASS: {"recall": 1.0}}}},
           "notes": ["<script>alert(4)</script>"]}
    text = bench_markdown(doc, plots=["bench (1).png"])
    assert_safe(text, HOSTILE_CLASS, "<script>alert(4)</script>")


def test_int8_debug_markdown_escapes_layer_names():
    """Layer names come from the model file (a foreign .keras): the int8_debug.md table escapes them too."""
    from cxredge.convert.debug import report_markdown

    row = {"rank": 1, "op": "CONV|2D", "tensor": f"model/{HOSTILE_CLASS}|`x`", "rmse_over_scale": 0.5,
           "max_abs_error": 0.1, "scale": 0.02}
    text = report_markdown(f"v{HOSTILE_CLASS}", [row], 8)
    assert_safe(text, HOSTILE_CLASS)
    assert cells(text)[6:8] == ["1", "CONV|2D"]  # the `|` did not split the op's cell
    assert escaped(HOSTILE_CLASS) in cells(text)[8] and "x" in cells(text)[8]
