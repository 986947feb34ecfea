"""A document written twice: Markdown and one self-contained HTML page (images base64-embedded). TF-free.

`Doc` collects blocks (headings, paragraphs, tables, images); `to_markdown` and `to_html` render them.
`fmt` and `md_table` are the number and table cells every Markdown writer shares. The report, the bench
and the audit writers all build on this module, which imports none of them.
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from cxredge import markdown as md


def fmt(value, spec: str = ".3f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    return md.table(headers, rows)  # every cell escaped (cxredge/markdown.py): names come from outside


@dataclass
class Doc:
    """Blocks rendered twice: ("h", level, text) ("p", text) ("table", headers, rows) ("img", path, caption)."""
    blocks: list[tuple] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # inputs skipped or refused: shown on the summary card

    def h(self, level: int, text: str):
        self.blocks.append(("h", level, text))

    def p(self, text: str):
        self.blocks.append(("p", text))

    def table(self, headers: list[str], rows: list[list[str]]):
        if rows:
            self.blocks.append(("table", headers, rows))

    def img(self, path: Path | None, caption: str, root: Path | None = None):
        """An image to embed. With `root`, only a PNG file inside it (resolved: no `..`, no symlink out) is
        embedded; anything else is left out with a warning (issue 22 cause 4)."""
        if path is None:
            return
        if root is not None:
            real = embeddable(path, root)
            if real is None or not is_png(real):
                if path.exists() or path.is_symlink():  # a missing plot is simply absent
                    self.warnings.append(f"{path}: not embedded (only PNG files inside {root} are)")
                return
            path = real
        if path.is_file():
            self.blocks.append(("img", path, caption))


def anchor(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")[:60] or "section"


def gh_anchor(text: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return "".join(ch for ch in text.lower().replace(" ", "-") if ch.isalnum() or ch in "-_")


def toc_entries(doc: Doc) -> list[tuple[str, str]]:
    return [(anchor(b[2]), b[2]) for b in doc.blocks if b[0] == "h" and b[1] == 2]


def to_markdown(doc: Doc, out_dir: Path) -> str:
    """The Markdown twin; every piece of text goes through cxredge/markdown.py (as to_html's through html.escape)."""
    parts = []
    for b in doc.blocks:
        if b[0] == "card":  # the report's summary card renders itself (report_summary.Card)
            parts += b[1].markdown()
        elif b[0] == "toc":
            parts.append("Contents: "
                         + " · ".join(f"[{md.text(t, False)}](#{gh_anchor(t)})" for _, t in toc_entries(doc)))
        elif b[0] == "h":
            parts.append("#" * b[1] + " " + md.text(b[2]))
        elif b[0] == "p":
            parts.append(md.rich(b[1]))
        elif b[0] == "table":
            parts.append(md.table(b[1], b[2]))
        elif b[0] == "img":
            parts.append(md.image(b[2], relpath(b[1], out_dir)))
        elif b[0] == "warn":  # audit's: ("warn", kind, message)
            parts.append(f"**warning ({md.text(b[1])})**: {md.text(b[2])}")
    return "\n\n".join(parts) + "\n"


def relpath(path: Path, base: Path) -> str:
    import os

    return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()


CSS = ("body{font-family:system-ui,sans-serif;max-width:1320px;margin:1.2em auto;padding:0 1em;color:#222}"
       "h1{margin:.2em 0 .4em}h2{border-bottom:1px solid #ddd;padding-bottom:2px;margin-top:1.6em}"
       "table{border-collapse:collapse;margin:.6em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px}"
       "th{background:#f2f2f2}td{text-align:right}td:first-child{text-align:left}figure{margin:.5em 0}"
       "img{max-width:100%}figcaption{font-size:13px;color:#555}code{background:#f4f4f4;padding:0 3px}"
       ".figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(600px,1fr));gap:8px 24px;align-items:end}"
       ".card{border:2px solid #2b6cb0;border-radius:8px;padding:10px 18px 12px;background:#f7fbff}"
       ".card h2{margin:.1em 0 .2em;border:0}.card .rule{font-size:13px;color:#444;margin:.2em 0 .6em}"
       ".cols{display:grid;grid-template-columns:minmax(0,1.1fr) minmax(0,1fr);gap:0 28px}"
       ".card table{font-size:14px;width:100%}.card .facts th{text-align:left;width:34%}.card td{text-align:left}"
       ".warn{margin:.3em 0;padding-left:1.2em;font-size:14px}.warn li{margin:.15em 0;color:#8a4b00}"
       ".warnh{color:#b03a00;margin:.4em 0 .1em;font-size:15px}.ok{color:#2f7d32}"
       ".toc{font-size:14px;columns:3;margin:.8em 0;padding-left:1.2em}.toc li{margin:.1em 0}")


def to_html(doc: Doc) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>cxredge report</title>",
             f"<style>{CSS}</style></head><body>"]
    figs: list[str] = []
    for b in doc.blocks:
        if b[0] == "img":
            figs.append(block_html(b))
            continue
        if figs:  # consecutive figures side by side (two columns at 1400 px)
            parts.append("<div class='figs'>" + "".join(figs) + "</div>")
            figs = []
        parts.append(toc_html(doc) if b[0] == "toc" else block_html(b))
    if figs:
        parts.append("<div class='figs'>" + "".join(figs) + "</div>")
    return "\n".join(parts + ["</body></html>"]) + "\n"


def toc_html(doc: Doc) -> str:
    e = html.escape
    return ("<nav><b>Contents</b><ol class='toc'>" + "".join(f"<li><a href='#{a}'>{e(t)}</a></li>"
                                                            for a, t in toc_entries(doc)) + "</ol></nav>")


def block_html(b: tuple) -> str:
    """One Doc block as HTML (images base64-embedded)."""
    e = html.escape
    if b[0] == "card":
        return b[1].html()
    if b[0] == "h":
        ident = f" id='{anchor(b[2])}'" if b[1] == 2 else ""
        return f"<h{b[1]}{ident}>{e(b[2])}</h{b[1]}>"
    if b[0] == "p":
        return f"<p>{inline_code(e(b[1]))}</p>"
    if b[0] == "table":
        head = "".join(f"<th>{e(h)}</th>" for h in b[1])
        body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in b[2])
        return f"<table><tr>{head}</tr>{body}</table>"
    if b[0] == "img":
        data = base64.b64encode(b[1].read_bytes()).decode("ascii")
        return (f"<figure><img alt='{e(b[2])}' src='data:image/png;base64,{data}'>"
                f"<figcaption>{e(b[2])}</figcaption></figure>")
    return ""


def inline_code(text: str) -> str:
    out, inside = [], False
    for i, chunk in enumerate(text.split("`")):
        out.append(("<code>" + chunk + "</code>") if i % 2 else chunk)
        inside = not inside
    return "".join(out)


def embeddable(path: Path | str, root: Path) -> Path | None:
    """The resolved file when it is a regular file inside `root` (symlinks resolved first), else None.
    `path` is as the caller has it (absolute, or relative to the working folder like `root`), never re-rooted."""
    try:
        real = Path(path).resolve(strict=True)
        base = Path(root).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not real.is_file() or not real.is_relative_to(base):
        return None
    return real


def is_png(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8) == b"\x89PNG\r\n\x1a\n"
    except OSError:
        return False
