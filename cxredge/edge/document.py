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


def fmt(value, spec: str = ".3f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in r] for r in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in esc])


@dataclass
class Doc:
    """Blocks rendered twice: ("h", level, text) ("p", text) ("table", headers, rows) ("img", path, caption)."""
    blocks: list[tuple] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def h(self, level: int, text: str):
        self.blocks.append(("h", level, text))

    def p(self, text: str):
        self.blocks.append(("p", text))

    def table(self, headers: list[str], rows: list[list[str]]):
        if rows:
            self.blocks.append(("table", headers, rows))

    def img(self, path: Path | None, caption: str):
        if path is not None and path.is_file():
            self.blocks.append(("img", path, caption))


def to_markdown(doc: Doc, out_dir: Path) -> str:
    parts = []
    for b in doc.blocks:
        if b[0] == "h":
            parts.append("#" * b[1] + " " + b[2])
        elif b[0] == "p":
            parts.append(b[1])
        elif b[0] == "table":
            esc = lambda c: str(c).replace("|", "\\|")  # noqa: E731
            parts.append("\n".join(["| " + " | ".join(esc(h) for h in b[1]) + " |", "|" + "---|" * len(b[1])]
                                   + ["| " + " | ".join(esc(c) for c in r) + " |" for r in b[2]]))
        elif b[0] == "img":
            parts.append(f"![{b[2]}]({relpath(b[1], out_dir)})")
    return "\n\n".join(parts) + "\n"


def relpath(path: Path, base: Path) -> str:
    import os

    return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()


CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
       "table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px}"
       "th{background:#f2f2f2}td{text-align:right}td:first-child{text-align:left}figure{margin:1em 0}"
       "img{max-width:100%}figcaption{font-size:13px;color:#555}code{background:#f4f4f4;padding:0 3px}")


def to_html(doc: Doc) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>cxredge report</title>",
             f"<style>{CSS}</style></head><body>"]
    parts += [block_html(b) for b in doc.blocks]
    return "\n".join(parts + ["</body></html>"]) + "\n"


def block_html(b: tuple) -> str:
    """One Doc block as HTML (images base64-embedded)."""
    e = html.escape
    if b[0] == "h":
        return f"<h{b[1]}>{e(b[2])}</h{b[1]}>"
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
